"""Vision (data2vec 1.0, BEiT backbone): our encoder holds HF Data2VecVisionModel weights exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from data2vec.modalities.image.encoder import ImageEncoder, ImageEncoderConfig, relative_position_index
from data2vec.modalities.image.hf import KEYS as HF_KEYS


def _hf_to_ours(hf_sd: dict) -> dict:
    table = [(re.compile(re.escape(k).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), v) for k, v in HF_KEYS.items()]
    out = {}
    for key, t in hf_sd.items():
        for pat, dst in table:
            m = pat.match(key)
            if m:
                out[dst.format(**m.groupdict())] = t
                break
        else:
            raise AssertionError(f"HF key not in the table: {key}")
    return out


@pytest.mark.parametrize("image, patch, chans", [(32, 8, 3), (28, 4, 1)])
def test_matches_hf_data2vec_vision_layer_by_layer(image, patch, chans):
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    torch.manual_seed(0)
    hcfg = Data2VecVisionConfig(
        image_size=image, patch_size=patch, num_channels=chans, hidden_size=48, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=96, layer_norm_eps=1e-6, use_mask_token=True,
        use_shared_relative_position_bias=True, use_relative_position_bias=False,
        use_absolute_position_embeddings=False, use_mean_pooling=False, layer_scale_init_value=0.1,
        drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = Data2VecVisionModel(hcfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial values for the zero-initialised tables and layer scales
        for n, p in hf.named_parameters():
            if "relative_position_bias_table" in n or "lambda" in n or "token" in n:
                p.normal_(0, 0.5)
    ours = ImageEncoder(ImageEncoderConfig(image_size=image, patch_size=patch, in_chans=chans, embed_dim=48,
                                           depth=3, num_heads=4, mlp_ratio=2.0, drop_path_rate=0.0)).eval()
    sd = {k: v for k, v in hf.state_dict().items() if "relative_position_index" not in k}
    ours.load_state_dict(_hf_to_ours(sd), strict=True)

    x = torch.randn(2, chans, image, image)
    n = (image // patch) ** 2
    mask = torch.rand(2, n) < 0.5
    with torch.no_grad():
        ref = hf(x, bool_masked_pos=mask, output_hidden_states=True)
        out = ours(x, None, mask)
    for got, want in zip(out.layer_outputs, ref.hidden_states[1:]):
        torch.testing.assert_close(got, want[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.x, ref.last_hidden_state[:, 1:], atol=1e-5, rtol=1e-5)


def test_relative_position_index_cls_rows():
    idx = relative_position_index(2, 3)
    num = (2 * 2 - 1) * (2 * 3 - 1) + 3
    assert idx.shape == (7, 7) and idx[0, 0] == num - 1 and (idx[0, 1:] == num - 3).all() and (idx[1:, 0] == num - 2).all()
    assert idx[1, 1] == idx[2, 2] and idx[1, 2] != idx[2, 1]  # translation-invariant, direction-aware


def test_bad_image_shape_is_a_clear_error():
    enc = ImageEncoder(ImageEncoderConfig(image_size=28, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2))
    with pytest.raises(ValueError, match=r"expected images \[B, 1, 28, 28\]"):
        enc.embed(torch.zeros(2, 3, 28, 28))


# ---- masking --------------------------------------------------------------------------------
def test_block_mask_count_shape_and_determinism():
    from data2vec.modalities.image import BlockMaskConfig, block_mask

    cfg = BlockMaskConfig(num_mask_patches=120, min_num_patches=16, max_num_patches=196)
    masks = np.stack([block_mask((14, 14), cfg, seed=0, epoch=1, index=i) for i in range(50)])
    counts = masks.sum(1)
    assert masks.shape == (50, 196) and counts.max() <= 120 and counts.mean() > 110  # BEiT: exact or just short
    assert np.array_equal(masks[3], block_mask((14, 14), cfg, seed=0, epoch=1, index=3))
    assert not np.array_equal(masks[3], block_mask((14, 14), cfg, seed=0, epoch=2, index=3))
    grid = masks[0].reshape(14, 14)  # blocks, not salt and pepper: most masked patches have a masked neighbour
    nb = np.zeros_like(grid)
    nb[1:] |= grid[:-1]
    nb[:-1] |= grid[1:]
    nb[:, 1:] |= grid[:, :-1]
    nb[:, :-1] |= grid[:, 1:]
    assert (grid & nb).sum() >= 0.9 * grid.sum()
    with pytest.raises(ValueError, match="exceeds"):
        block_mask((7, 7), BlockMaskConfig(num_mask_patches=50), seed=0, epoch=1, index=0)


# ---- readers and augmentation ----------------------------------------------------------------
def test_image_folder_reads_every_mode(tmp_path):
    from PIL import Image

    from data2vec.modalities.image.dataset import AugmentConfig, ImageFolder

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a" / "rgb.jpg")
    Image.new("L", (28, 28), 128).save(tmp_path / "a" / "grey.png")
    Image.new("P", (20, 20)).save(tmp_path / "b" / "palette.gif")
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "b" / "alpha.png")  # transparent -> white
    (tmp_path / "b" / "notes.txt").write_text("ignored")
    aug = AugmentConfig(image_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ds = ImageFolder(tmp_path, channels=3, augment_cfg=aug, seed=0, train=False)
    assert ds.classes == ["a", "b"] and len(ds) == 4
    items = {ds.files[i][0].name: ds[i] for i in range(4)}
    assert all(it["image"].shape == (3, 8, 8) for it in items.values())
    torch.testing.assert_close(items["alpha.png"]["image"], torch.ones(3, 8, 8), atol=1e-3, rtol=0)
    torch.testing.assert_close(items["rgb.jpg"]["image"][:, 4, 4], torch.tensor([1.0, 0.0, 0.0]), atol=0.02, rtol=0)
    assert items["palette.gif"]["label"] == 1
    grey = ImageFolder(tmp_path, channels=1, augment_cfg=AugmentConfig(image_size=8, mean=(0.5,), std=(0.5,)),
                       seed=0, train=True)
    a, b = grey[1]["image"], grey[1]["image"]
    assert a.shape == (1, 8, 8) and torch.equal(a, b)  # seeded augmentation
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(tmp_path / "a" / "none", channels=1, augment_cfg=aug, seed=0) if False else \
            ImageFolder((tmp_path / "empty").mkdir() or tmp_path / "empty", channels=1, augment_cfg=aug, seed=0)


def test_image_folder_keep_checks_only_the_chosen_files(tmp_path):
    """``keep`` picks files from their labels before any header is read: a damaged file left out is never
    opened (nor reported), one kept is dropped and reported."""
    from PIL import Image

    from data2vec.modalities.image.dataset import AugmentConfig, ImageFolder

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / c / f"{i}.png")
    (tmp_path / "a" / "3.png").write_bytes(b"not a png")
    aug = AugmentConfig(image_size=8, mean=(0.5,), std=(0.5,))
    seen = []
    only_b = ImageFolder(tmp_path, channels=1, augment_cfg=aug, seed=0,
                         keep=lambda labels: seen.append(list(labels)) or [i for i, c in enumerate(labels) if c == 1])
    assert seen == [[0, 0, 0, 0, 1, 1, 1]]
    assert [(f.name, c) for f, c in only_b.files] == [("0.png", 1), ("1.png", 1), ("2.png", 1)]
    assert only_b.report.dropped == [] and len(only_b.sizes) == 3
    with_a = ImageFolder(tmp_path, channels=1, augment_cfg=aug, seed=0, keep=lambda labels: [0, 3, 4])
    assert [f.name for f, _ in with_a.files] == ["0.png", "0.png"] and len(with_a.report.dropped) == 1


def test_idx_reader(tmp_path):
    from data2vec.data.prepare_images import read_idx

    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    (tmp_path / "x.idx").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "x.idx"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "bad")


# ---- pretraining --------------------------------------------------------------------------
def test_image_pretrain_loss_falls(tmp_path, capsys):
    import json
    import statistics

    from conftest import set_args
    from PIL import Image

    from data2vec.cli import main

    rng = np.random.default_rng(0)
    for c in range(3):  # three classes of structured 28x28 images: stripes at different angles + noise
        (tmp_path / "img" / "train" / f"c{c}").mkdir(parents=True)
        yy, xx = np.mgrid[0:28, 0:28]
        for i in range(40):
            phase = rng.uniform(0, 6.28)
            img = 127 + 100 * np.sin((xx * np.cos(c) + yy * np.sin(c)) / 2.0 + phase) + rng.normal(0, 10, (28, 28))
            Image.fromarray(img.clip(0, 255).astype(np.uint8), mode="L").save(tmp_path / "img" / "train" / f"c{c}" / f"{i}.png")
    run = tmp_path / "run"
    over = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "model.targets.average_top_k_layers=2",
            "model.loss.loss_scale=0.03125", "data.batch_size=24", "data.num_workers=0", "train.max_update=40",
            "train.log_interval=1", "train.threads=1", "optim.warmup_updates=3"]
    assert main(["pretrain", "--preset", "image-tiny-v1", "--data", str(tmp_path / "img"), "--out", str(run),
                 *set_args(over)]) == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = statistics.mean(r["loss"] for r in recs[:5])
    last = statistics.mean(r["loss"] for r in recs[-5:])
    assert last < 0.7 * first, (first, last)
    assert "120 images in 3 classes" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["shared", "per_layer"])
def test_official_beit_pth_imports(tmp_path, layout):
    """An official-format checkpoint (fused qkv, q_bias/v_bias, gamma_*, argparse args) loads with the same outputs."""
    import argparse

    from data2vec.pretrained import load_pretrained

    torch.manual_seed(0)
    cfg = ImageEncoderConfig(image_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
                             mlp_ratio=2.0, rel_pos_bias=layout, use_mean_pooling=layout == "per_layer",
                             drop_path_rate=0.0)
    ours = ImageEncoder(cfg).eval()
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if "rel_pos_bias" in n or "lambda" in n:
                p.normal_(0, 0.3)
    o = ours.state_dict()
    sd = {"cls_token": o["context_encoder.cls_token"], "mask_token": o["mask_token"],
          "patch_embed.proj.weight": o["patch_embed.weight"], "patch_embed.proj.bias": o["patch_embed.bias"],
          "lm_head.weight": torch.randn(32, 32), "lm_head.bias": torch.zeros(32)}
    if layout == "shared":
        sd["rel_pos_bias.relative_position_bias_table"] = o["context_encoder.rel_pos_bias"]
        sd["norm.weight"], sd["norm.bias"] = o["context_encoder.norm.weight"], o["context_encoder.norm.bias"]
    else:
        sd["fc_norm.weight"], sd["fc_norm.bias"] = o["context_encoder.fc_norm.weight"], o["context_encoder.fc_norm.bias"]
    for i in range(2):
        L = f"context_encoder.layers.{i}."
        b = f"blocks.{i}."
        sd[b + "attn.qkv.weight"] = torch.cat([o[L + "attn.q.weight"], o[L + "attn.k.weight"], o[L + "attn.v.weight"]])
        sd[b + "attn.q_bias"], sd[b + "attn.v_bias"] = o[L + "attn.q.bias"], o[L + "attn.v.bias"]
        sd[b + "attn.relative_position_index"] = torch.zeros(17, 17, dtype=torch.long)  # a buffer, ignored
        if layout == "per_layer":
            sd[b + "attn.relative_position_bias_table"] = o[L + "rel_pos_bias"]
        for ours_k, theirs in (("attn.proj", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"), ("norm1", "norm1"),
                               ("norm2", "norm2")):
            sd[b + theirs + ".weight"], sd[b + theirs + ".bias"] = o[L + ours_k + ".weight"], o[L + ours_k + ".bias"]
        sd[b + "gamma_1"], sd[b + "gamma_2"] = o[L + "lambda_1"], o[L + "lambda_2"]
    torch.save({"model": sd, "args": argparse.Namespace(model="beit_base_patch16_224")}, tmp_path / "ckpt.pth")
    got_cfg, model = load_pretrained(tmp_path / "ckpt.pth")
    assert got_cfg.encoder.rel_pos_bias == layout and got_cfg.encoder.image_size == 16
    assert got_cfg.encoder.num_heads == 2 and got_cfg.encoder.depth == 2
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.student.encoder(x).x, ours(x).x)
    assert torch.equal(model.student.head.weight, sd["lm_head.weight"])
