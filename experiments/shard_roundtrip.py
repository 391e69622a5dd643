"""Round-trip the built-in corpora through WebDataset shards (``data2vec.data.shards``).

    python experiments/shard_roundtrip.py audio-tiny-v1=data/speech=10 text-tiny-v1=data/text=1000 \\
        image-tiny-v1=data/images=1000 text-tiny-v1=data/text-large=1000      # PRESET=DATA=SAMPLES_PER_SHARD

For each corpus: shard it (into ``--out``, default /tmp/shard-roundtrip), read one epoch from the shards on
one rank (every sample exactly once), check the first 12 batches equal what the map-style dataset and
collator give for the same indices (same clips/images/blocks, crops and masks), resume mid-epoch from the
batch count and check the continuation is identical, and plan 2 ranks x 2 workers (every sample once, or
dropped to equalise the ranks). Prints one line per corpus with the timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from data2vec.config import merge
from data2vec.data.shards import load_index, plan_epoch, shard_dataset
from data2vec.modalities import get_modality
from data2vec.presets import get_preset


def _data(cfg, rank: int = 0, world_size: int = 1):
    spec = get_modality(cfg.modality)
    dist = SimpleNamespace(rank=rank, world_size=world_size, is_main=rank == 0)
    return spec.build_pretrain_data(cfg, spec.build_encoder(cfg.encoder), dist, seed=1)


def _same(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    assert a.pop("skipped", []) == b.pop("skipped", [])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k], k


def roundtrip(preset: str, src: str, samples_per_shard: int, out_root: Path) -> str:
    cfg = merge(get_preset(preset), {"data": {"path": str(Path(src).resolve()), "num_workers": 0}})
    cfg = get_modality(cfg.modality).resolve_config(cfg)
    out = out_root / (Path(src).name + "-shards")
    t = time.time()
    shard_dataset(cfg, out, source=get_modality(cfg.modality).shard_source, samples_per_shard=samples_per_shard)
    t_shard = time.time() - t
    scfg = merge(cfg, {"data": {"path": str(out)}})
    shard_data, map_data = _data(scfg), _data(cfg)
    assert shard_data.num_examples == map_data.num_examples
    map_loader = map_data.make_loader(1)
    dataset, collate = map_loader.dataset, map_loader.collate_fn
    t = time.time()
    seen, head = [], []
    for j, b in enumerate(shard_data.make_loader(1)):
        seen += b["indices"].tolist()
        if j < 12:
            head.append(b)
            _same(b, collate([dataset[i] for i in b["indices"].tolist()]))
    t_read = time.time() - t
    assert sorted(seen) == list(range(map_data.num_examples)), "not every sample exactly once"
    k = min(7, len(head) // 2)
    rest = list(shard_data.make_loader(1, k))
    for j in range(k, len(head)):
        _same(rest[j - k], head[j])
    assert sum(len(b["indices"]) for b in head[:k] + rest) == len(seen)

    index, d = load_index(out), scfg.data
    if cfg.modality == "image":
        sizes, budget = np.ones(len(index), np.int64), d.batch_size
    else:
        sizes = np.minimum(index.sizes, d.max_sample_size) if cfg.modality == "audio" else index.sizes
        budget = d.max_tokens
    ids, dropped = [], 0
    for r in (0, 1):
        p = plan_epoch(index, sizes, seed=1, epoch=1, rank=r, world_size=2, num_workers=2, max_tokens=budget,
                       max_sentences=getattr(d, "max_sentences", None))
        dropped += p.dropped
        ids += [int(i) for sp in p.streams for _, _, b in sp.batches for i in b]
    assert len(ids) == len(set(ids)) and len(ids) + dropped == len(index)
    return (f"{preset} {src}: {len(index):,} samples in {len(index.files)} shards; shard {t_shard:.1f} s, one epoch "
            f"read {t_read:.1f} s, every sample once; first {len(head)} batches = map-style; resume at batch {k} "
            f"exact; 2 ranks x 2 workers: {len(ids):,} once + {dropped:,} dropped to equalise the ranks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpora", nargs="+", metavar="PRESET=DATA=SAMPLES_PER_SHARD")
    ap.add_argument("--out", default="/tmp/shard-roundtrip", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for item in args.corpora:
        preset, src, sps = item.split("=")
        print(roundtrip(preset, src, int(sps), args.out), flush=True)


if __name__ == "__main__":
    main()
