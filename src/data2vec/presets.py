"""Named recipes. Each preset is a function returning a complete ``PretrainConfig``.

``audio-base-v1`` is fairseq ``examples/data2vec/config/audio/pretraining/base_librispeech.yaml`` with
the ``data2vec_audio`` / ``Wav2Vec2Config`` defaults it relies on (SPEC A.1), field by field; the test
``tests/test_presets.py`` checks it against a table transcribed from SPEC. The published run used
16 GPUs x 3.8M samples per GPU: on fewer devices, raise ``train.update_freq`` to keep the batch.
Tiny presets are ours: small enough to learn something on a 2-core CPU in minutes.
The ``*-v2`` presets are fairseq ``examples/data2vec/config/v2/{base,large}_{audio,images,text}_only_task.yaml``
(SPEC A.4's table), checked field by field in ``tests/test_presets.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from data2vec.core.data2vec import Data2VecConfig, EMAConfig
from data2vec.core.loss import LossConfig
from data2vec.core.monitors import CollapseConfig
from data2vec.core.targets import TargetConfig
from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.layers.decoder import DecoderConfig
from data2vec.modalities.audio import AudioDataConfig, AudioEncoderConfig, SpanMaskConfig
from data2vec.modalities.audio.encoder_v2 import AudioEncoderV2Config
from data2vec.modalities.image import BlockMaskConfig, ImageEncoderConfig
from data2vec.modalities.image.data import ImageDataConfig
from data2vec.modalities.image.dataset import AugmentConfig
from data2vec.modalities.image.encoder_v2 import ImageEncoderV2Config
from data2vec.modalities.text import TextEncoderConfig, TokenMaskConfig
from data2vec.modalities.text.data import TextDataConfig
from data2vec.modalities.text.encoder_v2 import TextEncoderV2Config
from data2vec.modalities.text.masking_v2 import RandomMaskV2Config
from data2vec.train.config import PretrainConfig, TrainConfig
from data2vec.train.optim import OptimConfig


def audio_base_v1() -> PretrainConfig:
    return PretrainConfig(
        modality="audio",
        preset="audio-base-v1",
        encoder=AudioEncoderConfig(
            conv_feature_layers="[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2",
            extractor_mode="layer_norm", conv_bias=False, local_grad_mult=1.0,
            embed_dim=768, depth=12, ffn_embed_dim=3072, num_heads=12,
            dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, layerdrop=0.05,
            dropout_input=0.0, conv_pos_width=95, conv_pos_groups=16, conv_pos_depth=5,
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
        embed_dim=128, depth=4, ffn_embed_dim=512, num_heads=4,
        dropout=0.0, attention_dropout=0.0, layerdrop=0.0, conv_pos_width=95, conv_pos_groups=16, conv_pos_depth=5,
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
        encoder=TextEncoderConfig(vocab_size=0, max_positions=512, embed_dim=768, depth=12,
                                  ffn_embed_dim=3072, num_heads=12, dropout=0.1,
                                  attention_dropout=0.1, activation_dropout=0.0, layerdrop=0.0,
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
    cfg.encoder = TextEncoderConfig(vocab_size=0, max_positions=128, embed_dim=256, depth=4,
                                    ffn_embed_dim=1024, num_heads=4, dropout=0.1,
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
        modality="image",
        preset="image-base-v1",
        encoder=ImageEncoderConfig(image_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
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
    cfg.encoder = ImageEncoderConfig(image_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
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
    cfg.encoder = ImageEncoderConfig(image_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3,
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


# ---- data2vec 2.0 (fairseq examples/data2vec/config/v2/*_only_task.yaml, SPEC A.4) ----------------------

def _v2_model(*, decay: tuple[float, float, int], k: int, targets: dict, decoder: DecoderConfig, transformer_only: bool,
              loss_scale: float | None = None, cls_loss: float = 0.0, collapse: CollapseConfig | None = None):
    return Data2VecConfig(
        ema=EMAConfig(ema_decay=decay[0], ema_end_decay=decay[1], ema_anneal_end_step=decay[2],
                      ema_transformer_only=transformer_only, ema_layers_only=False),
        targets=TargetConfig(average_top_k_layers=k, layer_results="ffn", **targets),
        loss=LossConfig(loss_beta=0.0, loss_scale=loss_scale),
        collapse=collapse or CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=5000),
        decoder=decoder, cls_loss=cls_loss)


def audio_base_v2() -> PretrainConfig:
    """``base_audio_only_task.yaml``: 12 blocks, ALiBi, 8 clones, 1-D decoder 4 x 384; 8 GPUs x 1M samples."""
    return PretrainConfig(
        modality="audio", version=2, preset="audio-base-v2",
        encoder=AudioEncoderV2Config(
            embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, norm_eps=1e-5, encoder_dropout=0.1,
            attention_dropout=0.1, activation_dropout=0.0, post_mlp_drop=0.1, layerdrop=0.05, prenet_depth=0,
            prenet_layerdrop=0.05, prenet_dropout=0.1, use_alibi_encoder=True, learned_alibi_scale=True,
            learned_alibi_scale_per_head=True, conv_feature_layers="[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2",
            extractor_mode="layer_norm", conv_pos_width=95, conv_pos_groups=16, conv_pos_depth=5),
        masking=BlockMaskV2Config(mask_prob=0.5, mask_prob_adjust=0.05, mask_length=5, inverse_mask=False,
                                  mask_dropout=0.0, clone_batch=8),
        data=AudioDataConfig(normalize=True, max_sample_size=320000, min_sample_size=32000, max_tokens=1000000,
                             enable_padding=False),
        model=_v2_model(decay=(0.999, 0.99999, 75000), k=8, targets=dict(instance_norm_target_layer=True),
                        decoder=DecoderConfig(decoder_dim=384, decoder_groups=16, decoder_kernel=7, decoder_layers=4,
                                              input_dropout=0.1), transformer_only=True),
        optim=OptimConfig(optimizer="adamw", lr=7.5e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.01,
                          lr_scheduler="cosine", warmup_updates=8000, clip_norm=0.0),
        train=TrainConfig(max_update=400000, log_interval=200, save_interval_updates=25000),
    )


def audio_large_v2() -> PretrainConfig:
    """``large_audio_only_task.yaml``: 8 prenet + 16 blocks of 1024, 12 clones; 48 GPUs x 320k samples."""
    cfg = audio_base_v2()
    cfg.preset = "audio-large-v2"
    cfg.encoder = replace(cfg.encoder, embed_dim=1024, depth=16, num_heads=16, layerdrop=0.0, prenet_depth=8,
                          prenet_layerdrop=0.0)
    cfg.masking = replace(cfg.masking, mask_prob=0.55, mask_prob_adjust=0.1, clone_batch=12)
    cfg.data.max_tokens = 320000
    cfg.model = _v2_model(decay=(0.9997, 1.0, 300000), k=16, targets=dict(instance_norm_target_layer=True),
                          decoder=DecoderConfig(decoder_dim=768, decoder_groups=16, decoder_kernel=7, decoder_layers=4,
                                                input_dropout=0.1), transformer_only=True)
    cfg.optim = replace(cfg.optim, lr=4e-4, warmup_updates=10000, clip_norm=1.0)
    cfg.train.max_update = 600000
    return cfg


def audio_tiny_v2() -> PretrainConfig:
    """audio-tiny-v1's sizes (4 x 128, 64-channel CNN) with the v2 method; trains on a CPU."""
    cfg = audio_base_v2()
    cfg.preset = "audio-tiny-v2"
    cfg.encoder = replace(cfg.encoder, embed_dim=128, depth=4, num_heads=4, mlp_ratio=4.0, encoder_dropout=0.0,
                          attention_dropout=0.0, post_mlp_drop=0.0, layerdrop=0.0, prenet_layerdrop=0.0, prenet_dropout=0.0,
                          conv_feature_layers="[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2")
    cfg.masking = replace(cfg.masking, clone_batch=4)
    cfg.data = AudioDataConfig(max_sample_size=48000, min_sample_size=8000, max_tokens=4 * 48000,
                               enable_padding=False, num_workers=1)
    cfg.model = _v2_model(decay=(0.998, 0.9999, 2000), k=3, targets=dict(instance_norm_target_layer=True),
                          decoder=DecoderConfig(decoder_dim=128, decoder_groups=16, decoder_kernel=7, decoder_layers=4,
                                                input_dropout=0.1), transformer_only=True,
                          collapse=CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=500))
    cfg.optim = OptimConfig(lr=7.5e-4, lr_scheduler="cosine", warmup_updates=60, clip_norm=5.0)
    cfg.train = TrainConfig(max_update=600, log_interval=5, save_interval_updates=100)
    return cfg


def audio_tiny_mel_v2() -> PretrainConfig:
    """audio-tiny-v2 on log-mel features (80 bands every 10 ms, one conv to 64 channels at 50 Hz) instead of the
    waveform CNN (not in fairseq). With 1 h of labels, CTC fine-tuning of the tiny model leaves the all-blank
    plateau from this front end and not from the CNN, pretrained or not (docs/results.md, "Speech, issue 15")."""
    cfg = audio_tiny_v2()
    cfg.preset = "audio-tiny-mel-v2"
    cfg.encoder = replace(cfg.encoder, extractor_mode="log_mel", conv_feature_layers="[(80, 400, 160), (64, 3, 2)]")
    return cfg


def image_base_v2() -> PretrainConfig:
    """``base_images_only_task.yaml``: 2 prenet + 10 blocks, inverse block masks, 16 clones, CLS loss 0.01,
    2-D decoder 6 x 768; 16 GPUs x 16 images."""
    return PretrainConfig(
        modality="image", version=2, preset="image-base-v2",
        encoder=ImageEncoderV2Config(
            image_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=10, num_heads=12, mlp_ratio=4.0,
            norm_eps=1e-6, encoder_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, post_mlp_drop=0.0,
            prenet_depth=2, num_extra_tokens=1, init_extra_token_zero=False, use_alibi_encoder=False),
        masking=BlockMaskV2Config(mask_prob=0.8, mask_prob_adjust=0.07, mask_length=3, inverse_mask=True, clone_batch=16),
        data=ImageDataConfig(batch_size=16, augment=AugmentConfig(image_size=224, crop_scale=(0.2, 1.0))),
        model=_v2_model(decay=(0.9998, 0.99999, 100000), k=10,
                        targets=dict(instance_norm_target_layer=True, layer_norm_targets=True),
                        decoder=DecoderConfig(decoder_dim=768, decoder_groups=16, decoder_kernel=3, decoder_layers=6,
                                              input_dropout=0.0), transformer_only=False, cls_loss=0.01,
                        collapse=CollapseConfig(min_target_var=0.0, min_pred_var=0.0)),
        optim=OptimConfig(optimizer="adamw", lr=1e-3, adam_betas=(0.9, 0.95), adam_eps=1e-8, weight_decay=0.05,
                          lr_scheduler="cosine", warmup_updates=50040, clip_norm=4.0),
        train=TrainConfig(max_update=375300, log_interval=200, save_interval_updates=25000),
    )


def image_large_v2() -> PretrainConfig:
    """``large_images_only_task.yaml``: 24 blocks of 1024, no prenet, K 18, 2-D decoder 3 x 1024 (k 5); 16 GPUs x 8."""
    cfg = image_base_v2()
    cfg.preset = "image-large-v2"
    cfg.encoder = replace(cfg.encoder, embed_dim=1024, depth=24, num_heads=16, prenet_depth=0)
    cfg.masking = replace(cfg.masking, mask_prob=0.75, mask_prob_adjust=0.1)
    cfg.data.batch_size = 8
    cfg.model = _v2_model(decay=(0.9998, 0.99999, 150000), k=18,
                          targets=dict(instance_norm_target_layer=True, layer_norm_targets=True),
                          decoder=DecoderConfig(decoder_dim=1024, decoder_groups=16, decoder_kernel=5, decoder_layers=3,
                                                input_dropout=0.0), transformer_only=False, cls_loss=0.01,
                          collapse=CollapseConfig(min_target_var=0.0, min_pred_var=0.0))
    cfg.optim.lr = 4e-4
    return cfg


def image_tiny_v2() -> PretrainConfig:
    """image-tiny-v1's sizes (6 x 192 on 28x28 grey, patch 4 = 7x7 grid) with the v2 method; trains on a CPU."""
    cfg = image_base_v2()
    cfg.preset = "image-tiny-v2"
    cfg.encoder = replace(cfg.encoder, image_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=5, num_heads=3,
                          prenet_depth=1)
    cfg.masking = replace(cfg.masking, mask_prob=0.6, mask_prob_adjust=0.07, mask_length=3, clone_batch=4)
    cfg.data = ImageDataConfig(batch_size=32, num_workers=1, augment=AugmentConfig(
        image_size=28, crop_scale=(0.35, 1.0), hflip=True, mean=(0.286,), std=(0.353,)))
    cfg.model = _v2_model(decay=(0.996, 0.9998, 1000), k=3,
                          targets=dict(instance_norm_target_layer=True, layer_norm_targets=True),
                          decoder=DecoderConfig(decoder_dim=192, decoder_groups=16, decoder_kernel=3, decoder_layers=3,
                                                input_dropout=0.0), transformer_only=False, cls_loss=0.01,
                          collapse=CollapseConfig(min_target_var=0.0, min_pred_var=0.0))
    cfg.optim = OptimConfig(lr=1e-3, adam_betas=(0.9, 0.95), adam_eps=1e-8, weight_decay=0.05, lr_scheduler="cosine",
                            warmup_updates=30, clip_norm=4.0)
    cfg.train = TrainConfig(max_update=300, log_interval=5, save_interval_updates=100)
    return cfg


def text_base_v2() -> PretrainConfig:
    """``base_text_only_task.yaml``: 12 blocks, random masks p 0.48, 8 clones, 1-D decoder 5 x 768 (k 9, 1 group,
    no residual, 2-layer projection), loss scale 1, EMA of the blocks; 16 GPUs x 4 x 512 tokens."""
    return PretrainConfig(
        modality="text", version=2, preset="text-base-v2",
        encoder=TextEncoderV2Config(
            vocab_size=0, max_positions=512, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, norm_eps=1e-5,
            encoder_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, post_mlp_drop=0.1, layerdrop=0.0,
            prenet_depth=0, dropout=0.1),
        masking=RandomMaskV2Config(mask_prob=0.48, clone_batch=8),
        data=TextDataConfig(tokens_per_sample=512, break_mode="none", max_tokens=4 * 512, max_sentences=4),
        model=_v2_model(decay=(0.9999, 0.99999, 100000), k=12, targets=dict(instance_norm_target_layer=True),
                        decoder=DecoderConfig(decoder_dim=768, decoder_groups=1, decoder_kernel=9, decoder_layers=5,
                                              input_dropout=0.1, decoder_residual=False, projection_layers=2,
                                              projection_ratio=2.0), transformer_only=True, loss_scale=1.0),
        optim=OptimConfig(optimizer="adamw", lr=2e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.01,
                          lr_scheduler="cosine", warmup_updates=4000, clip_norm=1.0),
        train=TrainConfig(max_update=1000000, log_interval=200, save_interval_updates=50000),
    )


def text_large_v2() -> PretrainConfig:
    """``large_text_only_task.yaml``: 24 blocks of 1024, K 24, per-layer LN then final IN, p 0.5; 32 GPUs x 2 x 512."""
    cfg = text_base_v2()
    cfg.preset = "text-large-v2"
    cfg.encoder = replace(cfg.encoder, embed_dim=1024, depth=24, num_heads=16)
    cfg.masking = replace(cfg.masking, mask_prob=0.5)
    cfg.data = replace(cfg.data, max_tokens=2 * 512, max_sentences=2)
    cfg.model = _v2_model(decay=(0.9999, 0.99999, 100000), k=24,
                          targets=dict(layer_norm_target_layer=True, instance_norm_targets=True),
                          decoder=cfg.model.decoder, transformer_only=True, loss_scale=1.0)
    cfg.optim = replace(cfg.optim, lr=1e-4)
    cfg.train.max_update = 600000
    return cfg


def text_tiny_v2() -> PretrainConfig:
    """text-tiny-v1's sizes (4 x 256, 128-token blocks) with the v2 method; trains on a CPU."""
    cfg = text_base_v2()
    cfg.preset = "text-tiny-v2"
    cfg.encoder = replace(cfg.encoder, max_positions=128, embed_dim=256, depth=4, num_heads=4)
    cfg.masking = replace(cfg.masking, clone_batch=4)
    cfg.data = TextDataConfig(tokens_per_sample=128, break_mode="none", max_tokens=8 * 128)
    cfg.model = _v2_model(decay=(0.998, 0.9999, 2000), k=3, targets=dict(instance_norm_target_layer=True),
                          decoder=DecoderConfig(decoder_dim=256, decoder_groups=1, decoder_kernel=9, decoder_layers=3,
                                                input_dropout=0.1, decoder_residual=False, projection_layers=2),
                          transformer_only=True, loss_scale=1.0,
                          collapse=CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=500))
    cfg.optim = OptimConfig(lr=5e-4, lr_scheduler="cosine", warmup_updates=50, clip_norm=1.0)
    cfg.train = TrainConfig(max_update=500, log_interval=5, save_interval_updates=100)
    return cfg


PRESETS: dict[str, tuple[Callable[[], PretrainConfig], str]] = {
    "audio-base-v1": (audio_base_v1, "data2vec 1.0 speech Base, LibriSpeech recipe (fairseq base_librispeech.yaml)"),
    "audio-tiny-v1": (audio_tiny_v1, "data2vec 1.0 speech, 4 x 128 Transformer (~1 M params), 1-3 s clips; trains on a CPU"),
    "image-base-v1": (image_base_v1, "data2vec 1.0 image ViT-B/16, official recipe (BEiT backbone, 120/196 block masks)"),
    "image-large-v1": (image_large_v1, "data2vec 1.0 image ViT-L/16, official recipe (first 800-epoch stage)"),
    "image-tiny-v1": (image_tiny_v1, "data2vec 1.0 image, 6 x 192 ViT on 28x28 grey images (Fashion-MNIST); trains on a CPU"),
    "text-base-v1": (text_base_v1, "data2vec 1.0 text Base, fairseq text/pretraining/base.yaml (span masking 0.35 x 4)"),
    "text-tiny-v1": (text_tiny_v1, "data2vec 1.0 text, 4 x 256 Transformer, 128-token blocks, 8k BPE; trains on a CPU"),
    "audio-base-v2": (audio_base_v2, "data2vec 2.0 speech Base (fairseq v2/base_audio_only_task.yaml)"),
    "audio-large-v2": (audio_large_v2, "data2vec 2.0 speech Large (fairseq v2/large_audio_only_task.yaml)"),
    "audio-tiny-v2": (audio_tiny_v2, "data2vec 2.0 speech, 4 x 128, 4 clones, 1-3 s clips; trains on a CPU"),
    "audio-tiny-mel-v2": (audio_tiny_mel_v2, "audio-tiny-v2 on 80 log-mel bands, not the waveform CNN; trains on a CPU"),
    "image-base-v2": (image_base_v2, "data2vec 2.0 image ViT-B/16 (fairseq v2/base_images_only_task.yaml)"),
    "image-large-v2": (image_large_v2, "data2vec 2.0 image ViT-L/16 (fairseq v2/large_images_only_task.yaml)"),
    "image-tiny-v2": (image_tiny_v2, "data2vec 2.0 image, 1 + 5 x 192 on 28x28 grey images, 4 clones; trains on a CPU"),
    "text-base-v2": (text_base_v2, "data2vec 2.0 text Base (fairseq v2/base_text_only_task.yaml)"),
    "text-large-v2": (text_large_v2, "data2vec 2.0 text Large (fairseq v2/large_text_only_task.yaml)"),
    "text-tiny-v2": (text_tiny_v2, "data2vec 2.0 text, 4 x 256, 128-token blocks, 4 clones; trains on a CPU"),
}


def get_preset(name: str) -> PretrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; `data2vec presets` lists them: {', '.join(PRESETS)}")
    return PRESETS[name][0]()
