"""Text pretraining data: prepared directory -> blocks -> length-bucketed batches -> masking collator.

The corpus is checked when loaded (``data2vec.data.text.load_corpus``); the input files that
``data2vec prepare text`` skipped (binary, empty, lines not UTF-8) are listed in the run's skip summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data2vec.config import merge
from data2vec.data.sampler import BucketBatchSampler, PretrainData, build_loader
from data2vec.data.shards import build_shard_data, check_meta, is_shard_dir, load_index
from data2vec.data.skips import CollateWithSkips
from data2vec.data.text import TextBlockDataset, Tokenizer, read_corpus_info
from data2vec.modalities.text.collator import TextCollator
from data2vec.modalities.text.shards import TextDecoder


@dataclass(kw_only=True)
class TextDataConfig:
    path: str = ""  # directory from `data2vec prepare text` (vocab.json, merges.txt, train.npz), or shards
    train_subset: str = "train"
    tokens_per_sample: int = 512  # block length including <s>
    break_mode: Literal["complete_doc", "none"] = "complete_doc"
    max_tokens: int = 8192  # batch budget: batch size x longest block, in tokens
    max_sentences: int | None = None  # cap on blocks per batch
    num_workers: int = 1


def _require_dir(d: TextDataConfig) -> Path:
    if not d.path:
        raise ValueError("no training data: pass --data DIR (made by `data2vec prepare text --out DIR`)")
    p = Path(d.path)
    if is_shard_dir(p):  # `data2vec shard` output: the tokenizer files are copied beside the shards
        return p
    if not (p / f"{d.train_subset}.npz").is_file():
        raise ValueError(f"{p / (d.train_subset + '.npz')} not found: --data must be a directory made by "
                         "`data2vec prepare text --out DIR`")
    return p


def resolve_config(cfg):
    """Take the vocabulary size from the data's tokenizer when the config leaves it at 0."""
    if cfg.encoder.vocab_size == 0:
        return merge(cfg, {"encoder": {"vocab_size": Tokenizer(_require_dir(cfg.data)).vocab_size}})
    return cfg


def build_pretrain_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    d: TextDataConfig = cfg.data
    root = _require_dir(d)
    tok = Tokenizer(root)
    if tok.vocab_size != encoder.cfg.vocab_size:
        raise ValueError(f"the tokenizer in {root} has {tok.vocab_size} tokens but encoder.vocab_size is "
                         f"{encoder.cfg.vocab_size}; set encoder.vocab_size=0 to take it from the data")
    if d.tokens_per_sample > encoder.cfg.max_positions:
        raise ValueError(f"data.tokens_per_sample={d.tokens_per_sample} exceeds encoder.max_positions="
                         f"{encoder.cfg.max_positions}")
    if is_shard_dir(root):
        return _build_shard_data(cfg, tok, root, dist, seed=seed)
    dataset = TextBlockDataset(root / f"{d.train_subset}.npz", tokens_per_sample=d.tokens_per_sample,
                               break_mode=d.break_mode, bos=tok.bos, vocab_size=tok.vocab_size)
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=d.max_tokens, max_sentences=d.max_sentences, seed=seed,
                                 num_replicas=dist.world_size, rank=dist.rank)
    collator = TextCollator(cfg.masking, seed, tok.pad, tok.mask, tok.special_ids, tok.vocab_size)

    prepared_skips = [tuple(x) for x in read_corpus_info(root).get("skipped", [])]  # by `prepare text`

    class Report:
        @staticmethod
        def skipped() -> list[tuple[str, str]]:
            return list(prepared_skips)

        @staticmethod
        def summary() -> str:
            return (f"{root.name}/{d.train_subset}.npz: {int(dataset.sizes.sum()):,} tokens in {len(dataset):,} "
                    f"blocks of <= {d.tokens_per_sample} ({d.break_mode}); vocabulary {tok.vocab_size:,}"
                    + (f"; {len(prepared_skips)} input file(s) skipped by `data2vec prepare text`"
                       if prepared_skips else ""))

    def make_loader(epoch: int, start_batch: int = 0):
        return build_loader(dataset, sampler, collator, num_workers=d.num_workers, epoch=epoch, start_batch=start_batch)

    return PretrainData(sampler, make_loader, Report(), len(dataset))


def _build_shard_data(cfg, tok, root: Path, dist, *, seed: int) -> PretrainData:
    """Streaming from ``data2vec shard`` output (``data2vec.data.shards``): the same blocks and masks."""
    d: TextDataConfig = cfg.data
    index = load_index(root, "text")
    check_meta(index, tokens_per_sample=d.tokens_per_sample, break_mode=d.break_mode)
    collator = CollateWithSkips(TextCollator(cfg.masking, seed, tok.pad, tok.mask, tok.special_ids, tok.vocab_size))
    return build_shard_data(index, decode=TextDecoder(tok.vocab_size), collate=collator, sizes=index.sizes,
                            seed=seed, dist=dist, num_workers=d.num_workers, max_tokens=d.max_tokens,
                            max_sentences=d.max_sentences)
