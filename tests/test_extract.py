"""Feature extraction: every modality from the CLI, and batching that does not change the numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, shared_file_mode
from data2vec.config import merge
from data2vec.extract import Extractor
from data2vec.pretrained import build_model, save_pretrained
from data2vec.presets import get_preset

SMALL = {
    "audio-tiny-v1": {"encoder": {"encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_layers": 2,
                                  "encoder_attention_heads": 2, "conv_pos": 16, "conv_pos_groups": 4, "pos_conv_depth": 2,
                                  "conv_feature_layers": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2"},
                      "model": {"targets": {"average_top_k_layers": 2}}},
    "image-tiny-v1": {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
                      "model": {"targets": {"average_top_k_layers": 2}}},
}


def _model_dir(tmp_path, preset, extra=None):
    cfg = merge(get_preset(preset), {**SMALL.get(preset, {}), **(extra or {})})
    return save_pretrained(cfg, build_model(cfg), tmp_path / preset)


def test_audio_files_from_the_cli(tmp_path, speech_corpus):
    from data2vec.modalities.audio.dataset import read_manifest

    m = read_manifest(speech_corpus / "train.tsv")
    files = [str(m.root / p) for p in m.paths[:3]]
    d = _model_dir(tmp_path, "audio-tiny-v1")
    run_cli("extract", str(d), *files, "--layer", "all", "--out", str(tmp_path / "a.safetensors"))
    feats = load_file(str(tmp_path / "a.safetensors"))
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == shared_file_mode()  # not safetensors' 0o600
    from data2vec.modalities.audio.encoder import conv_frame_lengths, parse_conv_layers

    conv = parse_conv_layers(SMALL["audio-tiny-v1"]["encoder"]["conv_feature_layers"])
    frames = [int(conv_frame_lengths(torch.tensor([s]), conv)[0]) for s in m.sizes[:3]]
    assert [tuple(feats[str(i)].shape) for i in range(3)] == [(2, f, 32) for f in frames]
    run_cli("extract", str(d), *files, "--layer", "2", "--pool", "mean", "--out", str(tmp_path / "a.npy"))
    pooled = np.load(tmp_path / "a.npy")
    np.testing.assert_allclose(pooled, torch.stack([feats[str(i)][1].mean(0) for i in range(3)]).numpy(), atol=1e-5)


def test_images_from_the_cli(tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8), mode="L").save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    d = _model_dir(tmp_path, "image-tiny-v1")
    run_cli("extract", str(d), *paths, "--out", str(tmp_path / "f.npy"))
    assert np.load(tmp_path / "f.npy").shape == (3, 49, 32)  # final output, per patch
    bad = run_cli("extract", str(d), "nope.png", "--out", str(tmp_path / "g.npy"), check=False)
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_text_padded_batch_equals_one_by_one(tmp_path):
    from data2vec.data.prepare_text import prepare_text

    (tmp_path / "docs.txt").write_text("\n\n".join(f"The {w} sat on the mat number {i}." for i, w in
                                                   enumerate(["cat", "dog", "bird", "fish"] * 20)) + "\n")
    prepare_text(tmp_path / "text", inputs=[str(tmp_path / "docs.txt")], vocab_size=200)
    small = {"encoder": {"vocab_size": 0, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_layers": 2,
                         "encoder_attention_heads": 2}, "model": {"targets": {"average_top_k_layers": 2}},
             "data": {"path": str(tmp_path / "text")}}
    from data2vec.modalities.text.data import resolve_config

    cfg = resolve_config(merge(get_preset("text-tiny-v1"), small))
    d = save_pretrained(cfg, build_model(cfg), tmp_path / "model")
    ex = Extractor(d)
    lines = ["A short one.", "A much longer line with many more words in it than the first one."]
    batched = ex.text(lines, "all", "none")
    alone = [ex.text([line], "all", "none")[0] for line in lines]
    for b, a in zip(batched, alone):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert batched[0].shape[1] < batched[1].shape[1]  # per token, padding removed
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    run_cli("extract", str(d), "--text-file", str(tmp_path / "lines.txt"), "--pool", "mean",
            "--out", str(tmp_path / "t.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), torch.stack([a[-1].mean(0) for a in alone]).numpy(),
                               atol=1e-5)


def test_npy_needs_equal_shapes(tmp_path):
    from data2vec.extract import save_features

    with pytest.raises(ValueError, match="--pool mean"):
        save_features([torch.zeros(3, 4), torch.zeros(5, 4)], tmp_path / "x.npy")
