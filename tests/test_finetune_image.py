"""Image classification fine-tuning: layer-wise lr decay, linear probe, and a tiny run that learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import set_args

from data2vec.cli import main
from data2vec.modalities.image import ImageEncoder, ImageEncoderConfig
from data2vec.modalities.image.finetune import ImageClassifier, ImageHeadConfig


def _encoder():
    return ImageEncoder(ImageEncoderConfig(image_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=3,
                                           num_heads=2, drop_path_rate=0.0))


def test_layer_decay_groups():
    model = ImageClassifier(_encoder(), ImageHeadConfig(num_classes=3, layer_decay=0.5))
    scale = {}
    for g in model.optim_param_groups(0.05, True):
        for p in g["params"]:
            scale[id(p)] = (g["lr_scale"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert scale[id(named["head.weight"])] == (1.0, 0.05)
    assert scale[id(named["head.bias"])] == (1.0, 0.0)
    assert scale[id(named["encoder.context_encoder.layers.2.fc1.weight"])] == (0.5, 0.05)
    assert scale[id(named["encoder.context_encoder.layers.0.fc1.weight"])] == (0.125, 0.05)
    assert scale[id(named["encoder.patch_embed.weight"])] == (0.0625, 0.05)
    assert scale[id(named["encoder.context_encoder.cls_token"])] == (0.0625, 0.0)


def test_linear_probe_freezes_the_encoder():
    model = ImageClassifier(_encoder(), ImageHeadConfig(num_classes=3, linear_probe=True)).train()
    assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
    assert sum(p.numel() for g in model.optim_param_groups(0.0, True) for p in g["params"]) == 32 * 2 + 32 * 3 + 3


def _image_folders(root, n=30):
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    for split, count in (("train", n), ("valid", 10), ("test", 10)):
        for c in range(3):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(count):
                # vertical stripes, one frequency per class (invariant to the flips of the augmentation)
                img = 127 + 100 * np.sin(xx * (0.4, 1.0, 2.2)[c] + rng.uniform(0, 6.28)) + 0 * yy
                img += rng.normal(0, 10, (28, 28))
                Image.fromarray(img.clip(0, 255).astype(np.uint8), mode="L").save(root / split / f"c{c}" / f"{i}.png")


SMALL = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "encoder.drop_path_rate=0.0",
         "data.batch_size=30", "data.num_workers=0", "train.max_update=80", "train.log_interval=5",
         "train.threads=1", "eval_interval=20", "optim.lr=2e-3", "optim.warmup_updates=3",
         "data.augment.crop_scale=(0.8, 1.0)"]


def test_finetune_from_scratch_learns_and_reports(tmp_path, capsys):
    _image_folders(tmp_path / "img")
    run = tmp_path / "ft"
    assert main(["finetune", "image-classification", "--preset", "image-tiny-v1", "--data", str(tmp_path / "img"),
                 "--out", str(run), *set_args(SMALL)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_valid"]["top1"] > 0.6 and metrics["test"]["top1"] > 0.6  # chance is 1/3
    assert metrics["test"]["examples"] == 30 and metrics["test"]["top5"] == 1.0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("valid_top1" in r for r in recs) and (run / "checkpoint_best.pt").is_file()
    assert "labelled training images" in capsys.readouterr().out


def test_without_validation_the_test_split_scores_the_final_model(tmp_path):
    """``validate=false`` (a fixed budget, as ``make demo`` runs it): no validation pass, no best checkpoint, and
    metrics.json's test is the last checkpoint's, which ``data2vec evaluate`` reproduces. The validation split
    is not even opened: here its classes differ from train's, which a validating run refuses."""
    _image_folders(tmp_path / "img", n=10)
    (tmp_path / "img" / "valid" / "c0").rename(tmp_path / "img" / "valid" / "other")
    run = tmp_path / "ft"
    assert main(["finetune", "image-classification", "--preset", "image-tiny-v1", "--data", str(tmp_path / "img"),
                 "--out", str(run), *set_args(SMALL + ["train.max_update=6", "eval_interval=2",
                                                       "validate=false"])]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_checkpoint"] == "last" and metrics["best_valid"]["top1"] is None
    assert not (run / "checkpoint_best.pt").exists()
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs and not any(k.startswith("valid_") for r in recs for k in r)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "image-classification", str(run / "checkpoint_last.pt"), "--data",
                 str(tmp_path / "img"), "--subset", "test", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)


def test_finetune_from_pretrained_with_few_labels(tmp_path):
    from data2vec.config import merge
    from data2vec.presets import get_preset
    from data2vec.pretrained import build_model, save_pretrained

    _image_folders(tmp_path / "img")
    cfg = merge(get_preset("image-tiny-v1"), {"encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2},
                                              "model": {"targets": {"average_top_k_layers": 2}}})
    src = save_pretrained(cfg, build_model(cfg), tmp_path / "pre")
    run = tmp_path / "ft"
    assert main(["finetune", "image-classification", "--init", str(src), "--data", str(tmp_path / "img"), "--out",
                 str(run), *set_args(["data.label_fraction=0.2", "train.max_update=4", "data.num_workers=0",
                                      "eval_interval=2", "train.threads=1"])]) == 0
    cfg_out = json.loads((run / "config.json").read_text())
    assert cfg_out["init"].endswith("pre") and cfg_out["head"]["num_classes"] == 3
    ck = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert ck["step"] == 4
    with pytest.raises(SystemExit):
        main(["finetune", "image-classification", "--help"])


def test_finetune_resume_continues(tmp_path):
    _image_folders(tmp_path / "img", n=8)
    run = tmp_path / "ft"
    base = ["finetune", "image-classification", "--preset", "image-tiny-v1", "--data", str(tmp_path / "img"),
            "--out", str(run)]
    small = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "data.batch_size=8",
             "data.num_workers=0", "train.threads=1", "eval_interval=2", "train.save_interval_updates=2"]
    assert main([*base, *set_args(small + ["train.max_update=2"])]) == 0
    assert main([*base, *set_args(small + ["train.max_update=2"])]) == 2  # exists: needs --resume
    assert main([*base, "--resume", *set_args(["train.max_update=4"])]) == 0
    ck = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert ck["step"] == 4 and ck["config"]["encoder"]["embed_dim"] == 32
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4


def test_soft_targets_match_cross_entropy_label_smoothing():
    from data2vec.modalities.image.finetune import soft_targets

    logits, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    t = soft_targets(y, 4, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(5))
    ours = -(t * torch.log_softmax(logits, -1)).sum(1).mean()
    torch.testing.assert_close(ours, torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1))


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_mixup_and_cutmix(mixup, cutmix):
    from data2vec.modalities.image.finetune import mix_batch, soft_targets

    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    t = soft_targets(torch.arange(4), 4, 0.0)
    mx, mt = mix_batch(x, t, ImageHeadConfig(num_classes=4, mixup=mixup, cutmix=cutmix))
    assert torch.allclose(mt.sum(1), torch.ones(4))
    lam = mt[0, 0].item()  # sample 0 mixed with sample 3 (the reversed batch)
    assert 0 <= lam <= 1 and torch.isclose(mt[0, 3], torch.tensor(1 - lam))
    if cutmix:  # lambda is the true share of sample 0's pixels
        assert (mx[0] == 0).float().mean().item() == pytest.approx(lam)
    else:
        torch.testing.assert_close(mx[0], torch.full((1, 8, 8), 3 * (1 - lam)))
    off = ImageHeadConfig(num_classes=4)
    assert mix_batch(x, t, off)[0] is x
