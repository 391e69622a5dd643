"""Sharded streaming data (``data2vec.data.shards``): WebDataset tar shards of every modality read back as the
map-style readers read them, every sample once per epoch over 2 ranks x 2 workers, exact resume mid-epoch,
a damaged shard, a short pretraining run on shards, and the memory-mapped text corpus."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import set_args
from data2vec.cli import main
from data2vec.config import merge, parse_override
from data2vec.data.shards import INDEX, load_index, plan_epoch, shard_dataset
from data2vec.modalities import get_modality
from data2vec.presets import get_preset

AUDIO = ["data.max_sample_size=8000", "data.min_sample_size=2000", "data.max_tokens=24000",
         "encoder.conv_feature_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
         "encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
         "encoder.num_heads=2", "encoder.conv_pos_width=16", "encoder.conv_pos_groups=4",
         "encoder.conv_pos_depth=2", "masking.mask_length=5"]
IMAGES = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "data.batch_size=4"]
TEXT = ["encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
        "encoder.num_heads=2", "encoder.max_positions=32", "data.tokens_per_sample=32",
        "data.max_tokens=256"]
CORPORA = {"audio": ("audio-tiny-v1", AUDIO), "image": ("image-tiny-v1", IMAGES), "text": ("text-tiny-v1", TEXT)}


def _cfg(modality: str, data: Path, extra: list[str] = ()):
    preset, over = CORPORA[modality]
    cfg = get_preset(preset)
    sets: dict = {}
    for item in [*over, *extra]:
        for k, v in parse_override(item).items():
            sets.setdefault(k, {}).update(v) if isinstance(v, dict) else sets.__setitem__(k, v)
    cfg = merge(cfg, {**sets, "data": {**sets.get("data", {}), "path": str(data)}})
    return get_modality(cfg.modality).resolve_config(cfg)


def _data(cfg, rank: int = 0, world_size: int = 1, seed: int = 3):
    spec = get_modality(cfg.modality)
    encoder = spec.build_encoder(cfg.encoder)
    dist = SimpleNamespace(rank=rank, world_size=world_size, is_main=rank == 0)
    return spec.build_pretrain_data(cfg, encoder, dist, seed=seed)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    """A tiny corpus of each modality: 30 wav clips, 24 PNGs in 2 classes, a text directory (~100 blocks)."""
    from PIL import Image

    from data2vec.data.prepare_text import prepare_text

    root = tmp_path_factory.mktemp("corpora")
    rng = np.random.default_rng(0)
    speech = root / "speech"
    (speech / "wav").mkdir(parents=True)
    lines = [str(speech / "wav")]
    for i in range(30):
        n = int(rng.integers(2500, 12000))
        sf.write(speech / "wav" / f"{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        lines.append(f"{i}.wav\t{n}")
    lines.append("gone.wav\t16000")  # dropped when sharding, named in the skip report
    (speech / "train.tsv").write_text("\n".join(lines) + "\n")
    images = root / "images"
    for c in range(2):
        (images / "train" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / "train" / f"c{c}" / f"{i}.png")
    text = root / "text"
    docs = root / "docs.txt"
    words = "the cat dog sat ran on a mat log red blue big small fast slow and".split()
    paras = ["\n".join(" ".join(rng.choice(words, rng.integers(4, 12))).capitalize() + "."
                       for _ in range(rng.integers(1, 5))) for _ in range(120)]
    docs.write_text("\n\n".join(paras) + "\n")
    prepare_text(text, inputs=[str(docs)], vocab_size=300, valid_fraction=0.1)
    shards = {}
    for modality, src in (("audio", speech), ("image", images), ("text", text)):
        shards[modality] = root / f"{modality}-shards"
        shard_dataset(_cfg(modality, src), shards[modality], source=get_modality(modality).shard_source,
                      samples_per_shard=5, shuffle_buffer=7)
    even = root / "image-shards-even"  # 4 shards of 6 images: 2 ranks x 2 workers get equal shares
    shard_dataset(_cfg("image", images), even, source=get_modality("image").shard_source, samples_per_shard=6,
                  shuffle_buffer=6)
    return {"audio": speech, "image": images, "text": text, "image-shards-even": even,
            **{f"{m}-shards": p for m, p in shards.items()}}


def _same_batch(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    assert a.pop("skipped", []) == b.pop("skipped", [])  # the map-style text collator has no skip list
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("modality", ["audio", "image", "text"])
def test_shards_round_trip_the_map_style_samples(corpora, modality):
    """One rank, in process: every sample once in an epoch, and each batch is exactly what the map-style
    dataset and collator give for the same indices (same clips/images/blocks, crops and masks)."""
    shard_data = _data(_cfg(modality, corpora[f"{modality}-shards"], ["data.num_workers=0"]))
    map_data = _data(_cfg(modality, corpora[modality], ["data.num_workers=0"]))
    assert shard_data.num_examples == map_data.num_examples
    loader = map_data.make_loader(2)  # sets the epoch on the map-style dataset
    dataset, collate = loader.dataset, loader.collate_fn
    seen = []
    batches = list(shard_data.make_loader(2))
    assert len(batches) == len(shard_data.make_loader(2)) > 1
    for b in batches:
        ids = b["indices"].tolist()
        seen += ids
        _same_batch(b, collate([dataset[i] for i in ids]))
    assert sorted(seen) == list(range(map_data.num_examples))
    if modality == "audio":
        assert [p for p, _ in shard_data.report.skipped()] == ["gone.wav"]


def test_webdataset_reads_our_shards(corpora):
    import webdataset as wds

    index = load_index(corpora["image-shards"])
    urls = [str(index.root / f) for f in index.files]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [int(s["__key__"]) for s in samples] == index.ids.tolist()  # written in a shuffled order
    assert sorted(index.ids.tolist()) == list(range(24)) and index.ids.tolist() != list(range(24))
    (third,) = [s for s in samples if s["__key__"] == "000000003"]
    assert json.loads(third["json"])["path"] == "c0/11.png" and third["png"][:4] == b"\x89PNG"


def _epoch(cfg_modality, path, rank, epoch, start=0, workers=2, world_size=2):
    data = _data(_cfg(cfg_modality, path, [f"data.num_workers={workers}"]), rank=rank, world_size=world_size)
    return list(data.make_loader(epoch, start))


@pytest.mark.parametrize("modality", ["text", "image"])
def test_two_ranks_two_workers_see_every_sample_once(corpora, modality):
    """2 ranks x 2 real loader workers: the ranks' batches are disjoint, every sample is read once per epoch
    (but those the plan drops to give both ranks the same batch count: none when the shares are equal)."""
    path = corpora["image-shards-even" if modality == "image" else "text-shards"]
    index = load_index(path)
    n = len(index)
    for epoch in (1, 2):
        per_rank = [_epoch(modality, path, r, epoch) for r in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1])
        seen = [i for batches in per_rank for b in batches for i in b["indices"].tolist()]
        assert len(seen) == len(set(seen))
        sizes = index.sizes if modality == "text" else np.ones(n, np.int64)
        cfg = _cfg(modality, path)
        budget = cfg.data.batch_size if modality == "image" else cfg.data.max_tokens
        dropped = sum(plan_epoch(index, sizes, seed=3, epoch=epoch, rank=r, world_size=2, num_workers=2,
                                 max_tokens=budget).dropped for r in (0, 1))
        assert len(seen) + dropped == n
        if modality == "image":
            assert dropped == 0 and sorted(seen) == list(range(n))
    # one rank, two workers: nothing dropped, every sample exactly once
    seen = [i for b in _epoch(modality, path, 0, 1, world_size=1) for i in b["indices"].tolist()]
    assert sorted(seen) == list(range(n))


def test_resume_mid_epoch_continues_exactly(corpora):
    """Kill after k batches (rank 1 of 2, 2 workers), rebuild the loader from the saved position: the rest of
    the epoch equals the uninterrupted one batch for batch (samples, order, masks)."""
    path = corpora["text-shards"]
    full = _epoch("text", path, 1, 3)
    assert len(full) >= 4
    for k in (1, 3, len(full) - 1):
        it = iter(_data(_cfg("text", path, ["data.num_workers=2"]), rank=1, world_size=2).make_loader(3))
        head = [next(it) for _ in range(k)]
        del it  # killed
        rest = _epoch("text", path, 1, 3, start=k)
        assert len(head) + len(rest) == len(full)
        for a, b in zip(head + rest, full):
            _same_batch(a, b)
    assert _epoch("text", path, 1, 3, start=len(full)) == []
    # in-process (num_workers=0) resume too
    full0 = _epoch("image", corpora["image-shards"], 0, 1, workers=0, world_size=1)
    rest0 = _epoch("image", corpora["image-shards"], 0, 1, start=2, workers=0, world_size=1)
    for a, b in zip(rest0, full0[2:], strict=True):
        _same_batch(a, b)


def test_damaged_shard_samples_are_substituted(corpora, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(corpora["image-shards"], bad)
    index = load_index(bad)
    victim = bad / index.files[1]
    victim.write_bytes(victim.read_bytes()[: 2000])  # truncated mid-sample
    batches = _epoch("image", bad, 0, 1, workers=0, world_size=1)
    skipped = [s for b in batches for s in b["skipped"]]
    lost = set(index.ids[index.offsets[1]:index.offsets[2]].tolist())
    assert skipped and all("shard" in reason for _, reason in skipped)
    ids = sorted(i for b in batches for i in b["indices"].tolist())
    assert ids == list(range(len(index)))  # every slot filled; the lost images replaced by readable ones
    assert {int(p.rsplit(" ", 1)[1]) for p, _ in skipped} <= lost  # files named once per slot they failed for


def test_shard_index_written_as_vision_reads_as_image(corpora, tmp_path):
    """Indexes written before the modality was renamed say `vision`: they load (MODALITY_ALIASES) as `image`."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(corpora["image-shards"], old)
    info = json.loads((old / INDEX).read_text())
    assert info["modality"] == "image"
    (old / INDEX).write_text(json.dumps({**info, "modality": "vision"}))
    assert load_index(old).modality == "image"
    assert load_index(old, "image").modality == load_index(old, "vision").modality == "image"
    ids = sorted(i for b in _epoch("image", old, 0, 1, workers=0, world_size=1) for i in b["indices"].tolist())
    assert ids == list(range(len(load_index(old))))


def test_shard_metadata_must_match_the_run(corpora):
    from data2vec.errors import Data2VecError

    with pytest.raises(Data2VecError, match="tokens_per_sample"):
        _data(_cfg("text", corpora["text-shards"], ["data.tokens_per_sample=16", "encoder.max_positions=32"]))
    with pytest.raises(Data2VecError, match="holds text shards"):
        load_index(corpora["text-shards"], "audio")


def test_text_corpus_is_memory_mapped(corpora):
    from data2vec.data.text import TextBlockDataset, load_corpus

    npz = corpora["text"] / "train.npz"
    arrays = load_corpus(npz)
    assert isinstance(arrays["tokens"], np.memmap) and arrays["tokens"].mode == "r"
    with np.load(npz) as data:
        assert np.array_equal(arrays["tokens"], data["tokens"])
    ds = TextBlockDataset(npz, tokens_per_sample=32, break_mode="complete_doc", bos=0)
    assert isinstance(ds.tokens, np.memmap)
    assert not isinstance(load_corpus(npz, mmap=False)["tokens"], np.memmap)


def test_shard_cli_pretrain_kill_and_resume_on_shards(corpora, tmp_path):
    """`data2vec shard`, then pretraining on the shards with 2 loader workers; a run killed (SIGKILL) after
    update 5 and resumed from its update-4 checkpoint ends bit-identical to the uninterrupted run."""
    from conftest import cli_cmd, kill9_when_logged, run_cli
    from data2vec.train.checkpoint import load_checkpoint

    out = tmp_path / "shards"
    assert main(["shard", "--preset", "text-tiny-v1", "--data", str(corpora["text"]), "--out", str(out),
                 "--samples-per-shard", "20", *set_args(TEXT)]) == 0
    info = json.loads((out / INDEX).read_text())
    assert info["modality"] == "text" and len(info["shards"]) >= 4 and (out / "vocab.json").is_file()
    over = [*TEXT, "data.num_workers=2", "model.targets.average_top_k_layers=2", "train.max_update=8",
            "train.save_interval_updates=2", "train.log_interval=1", "train.threads=1", "optim.warmup_updates=1"]
    args = ["pretrain", "--preset", "text-tiny-v1", "--data", str(out), *set_args(over)]
    done = run_cli(*args, "--out", str(tmp_path / "a"))
    assert "shards (streaming" in done.stdout
    killed = kill9_when_logged(cli_cmd(*args, "--out", str(tmp_path / "b")), tmp_path / "b", 5)
    assert killed.returncode == -9, killed.stderr
    run_cli("pretrain", "--out", str(tmp_path / "b"), "--resume")
    a, b = load_checkpoint(tmp_path / "a/checkpoint_last.pt"), load_checkpoint(tmp_path / "b/checkpoint_last.pt")
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    losses = [[json.loads(r)["loss"] for r in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]
              for run in (tmp_path / "a", tmp_path / "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 8 and all(np.isfinite(losses[0]))


def test_resume_with_other_loader_workers_rereads_the_epoch(corpora, tmp_path):
    """A sharded run resumed with another number of loader workers cannot find its place in the epoch's plan:
    it says so and reads the epoch again from its start instead of continuing at a wrong position."""
    from conftest import run_cli

    out = tmp_path / "shards"
    assert main(["shard", "--preset", "text-tiny-v1", "--data", str(corpora["text"]), "--out", str(out),
                 "--samples-per-shard", "20", *set_args(TEXT)]) == 0
    over = [*TEXT, "data.num_workers=2", "model.targets.average_top_k_layers=2", "train.max_update=3",
            "train.save_interval_updates=3", "train.log_interval=1", "train.threads=1", "optim.warmup_updates=1"]
    run_cli("pretrain", "--preset", "text-tiny-v1", "--data", str(out), *set_args(over), "--out", str(tmp_path / "r"))
    again = run_cli("pretrain", "--out", str(tmp_path / "r"), "--resume",
                    *set_args(["data.num_workers=0", "train.max_update=5"]))
    assert "is read again from its start" in again.stdout
    steps = [json.loads(r)["step"] for r in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in r]
    assert steps == [1, 2, 3, 4, 5]
