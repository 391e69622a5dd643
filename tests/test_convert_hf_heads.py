"""Fine-tuned models with their task heads, to and from HF transformers: CTC and image classification
(export -> transformers from_pretrained gives our outputs; import back gives them again)."""

from __future__ import annotations

import json

import pytest
import torch

from data2vec.convert.hf_heads import export_finetuned_hf
from data2vec.finetune.interop import finetuned_from_hf

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _asr():
    from data2vec.modalities.audio import AudioEncoder, AudioEncoderConfig
    from data2vec.modalities.audio.finetune import AsrFinetuneConfig, CtcHeadConfig, CtcModel

    enc_cfg = AudioEncoderConfig(conv_feature_layers="[(16, 10, 5)] + [(16, 3, 2)] * 2", embed_dim=32,
                                 ffn_embed_dim=64, depth=2, num_heads=2, conv_pos_width=16,
                                 conv_pos_groups=4, conv_pos_depth=2, dropout=0.0, attention_dropout=0.0,
                                 layerdrop=0.0)
    cfg = AsrFinetuneConfig(encoder=enc_cfg, head=CtcHeadConfig(symbols=("|", "E", "T", "A", "'")))
    model = CtcModel(AudioEncoder(enc_cfg), cfg.head)
    with torch.no_grad():
        model.proj.weight.normal_()
    return cfg, model.eval()


def test_ctc_model_round_trips_through_hf(tmp_path):
    from transformers import Data2VecAudioForCTC

    torch.manual_seed(0)
    cfg, ours = _asr()
    out = export_finetuned_hf(cfg, ours, tmp_path / "hf")
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "'": 8}
    hf = Data2VecAudioForCTC.from_pretrained(out).eval()
    x = torch.randn(2, 3000)
    with torch.no_grad():
        ref = hf(x).logits
        mine, _ = ours(x)
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
    cfg2, back = finetuned_from_hf(out)
    assert cfg2.task == "asr" and back.tokens == ours.tokens
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], mine, atol=1e-6, rtol=1e-6)
    (out / "vocab.json").unlink()
    with pytest.raises(ValueError, match="vocab.json"):
        finetuned_from_hf(out)


@pytest.mark.parametrize("mean_pooling_encoder", [False, True])
def test_image_classifier_round_trips_through_hf(tmp_path, mean_pooling_encoder):
    """Pretrained-layout encoder (own fc_norm, final LayerNorm dropped) or fine-tuned layout (encoder's fc_norm)."""
    from transformers import Data2VecVisionForImageClassification

    from data2vec.modalities.image import ImageEncoder, ImageEncoderConfig
    from data2vec.modalities.image.finetune import ImageClassifier, ImageFinetuneConfig, ImageHeadConfig

    torch.manual_seed(0)
    enc_cfg = ImageEncoderConfig(image_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
                                 drop_path_rate=0.0, use_mean_pooling=mean_pooling_encoder)
    cfg = ImageFinetuneConfig(encoder=enc_cfg, head=ImageHeadConfig(num_classes=4))
    ours = ImageClassifier(ImageEncoder(enc_cfg), cfg.head)
    with torch.no_grad():
        ours.head.weight.normal_()
        for p in ours.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))  # non-trivial norms and biases
    ours.eval()
    assert (ours.fc_norm is None) == mean_pooling_encoder
    out = export_finetuned_hf(cfg, ours, tmp_path / "hf")
    hf = Data2VecVisionForImageClassification.from_pretrained(out).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        mine = ours(x)
        torch.testing.assert_close(mine, hf(x).logits, atol=1e-5, rtol=1e-5)
        cfg2, back = finetuned_from_hf(out)
        assert cfg2.head.num_classes == 4 and back.fc_norm is None  # imported: the encoder's fc_norm
        torch.testing.assert_close(back(x), mine, atol=1e-6, rtol=1e-6)


def test_base_model_directory_is_not_a_task_model(tmp_path):
    from data2vec.config import merge
    from data2vec.convert.hf import export_hf
    from data2vec.presets import get_preset
    from data2vec.pretrained import build_model

    cfg = merge(get_preset("image-tiny-v1"), {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
                                              "model": {"targets": {"average_top_k_layers": 2}}})
    export_hf(cfg, build_model(cfg), tmp_path / "base")
    with pytest.raises(ValueError, match="not a task model"):
        finetuned_from_hf(tmp_path / "base")


def test_text_classifier_round_trips_through_hf_with_label_names(tmp_path):
    from transformers import Data2VecTextForSequenceClassification

    from data2vec.modalities.text import TextEncoder, TextEncoderConfig
    from data2vec.modalities.text.finetune import TextClassifier, TextFinetuneConfig, TextHeadConfig

    torch.manual_seed(0)
    enc_cfg = TextEncoderConfig(vocab_size=40, max_positions=32, embed_dim=32, depth=2,
                                ffn_embed_dim=64, num_heads=2, dropout=0.0,
                                attention_dropout=0.0, layernorm_embedding=True, no_scale_embedding=True)
    cfg = TextFinetuneConfig(encoder=enc_cfg, head=TextHeadConfig(num_classes=2, labels=("negative", "positive")))
    ours = TextClassifier(TextEncoder(enc_cfg), cfg.head).eval()
    out = export_finetuned_hf(cfg, ours, tmp_path / "hf")
    hf = Data2VecTextForSequenceClassification.from_pretrained(out).eval()
    assert hf.config.id2label == {0: "negative", 1: "positive"}
    tokens = torch.tensor([[0, 5, 6, 7, 2], [0, 9, 2, 1, 1]])
    with torch.no_grad():
        mine = ours(tokens)
        torch.testing.assert_close(mine, hf(input_ids=tokens, attention_mask=tokens.ne(1).long()).logits,
                                   atol=1e-5, rtol=1e-5)
        cfg2, back = finetuned_from_hf(out)
        assert cfg2.head.labels == ("negative", "positive")
        torch.testing.assert_close(back(tokens), mine, atol=1e-6, rtol=1e-6)
