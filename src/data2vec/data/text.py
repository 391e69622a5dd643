"""Text data for pretraining: byte-level BPE tokenizer, a binarized corpus, blocks, and the masking collator.

A prepared text directory (``data2vec prepare text``) holds ``vocab.json`` + ``merges.txt`` (RoBERTa
format: official RoBERTa/data2vec vocabularies load the same way) and ``{split}.npz`` with the token
stream (each sentence ends with ``</s>``) and the sentence and document boundaries. Tokenization
happens once; training loads the arrays (shared copy-on-write by loader workers).

Blocks (fairseq ``TokenBlockDataset``, ``tokens_per_sample - 1`` tokens, then ``<s>`` prepended):
``complete_doc`` packs whole sentences and never crosses a document boundary; ``none`` cuts the
stream into equal blocks. A sentence longer than a block is split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data2vec.data.masks_v2 import BlockMaskV2Config, RandomMaskV2Config, draw_v2_masks
from data2vec.modalities.text.masking import TokenMaskConfig, mask_tokens

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class Tokenizer:
    """Byte-level BPE (GPT-2/RoBERTa style) with RoBERTa's special ids: <s>=0, <pad>=1, </s>=2, <unk>=3.

    ``vocab.json`` + ``merges.txt`` with the special tokens inside (ours, or HF RoBERTa's) give ids
    directly. With a fairseq ``dict.txt`` beside GPT-2's ``vocab.json``/``merges.txt`` (official
    RoBERTa/data2vec text checkpoints), BPE ids are mapped through the dictionary as fairseq does:
    its line ``k`` holds a GPT-2 id and becomes id ``4 + k``; ``<mask>`` is appended last.
    """

    def __init__(self, directory: str | Path):
        from tokenizers import ByteLevelBPETokenizer

        d = Path(directory)
        vocab, merges = d / "vocab.json", d / "merges.txt"
        if not vocab.is_file() or not merges.is_file():
            raise ValueError(f"{d} has no vocab.json + merges.txt (make them with `data2vec prepare text`)")
        self.bpe = ByteLevelBPETokenizer(str(vocab), str(merges))
        self.to_fairseq: np.ndarray | None = None
        if (d / "dict.txt").is_file():
            self._init_fairseq_dict(d / "dict.txt")
            return
        ids = {s: self.bpe.token_to_id(s) for s in SPECIALS}
        missing = [s for s, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"{vocab} lacks special tokens {missing} (and there is no fairseq dict.txt beside it)")
        self.bos, self.pad, self.eos, self.unk, self.mask = (ids[s] for s in SPECIALS)
        if self.pad != 1:
            raise ValueError(f"<pad> must have id 1 (RoBERTa/fairseq layout), {vocab} has {self.pad}")
        self.vocab_size = self.bpe.get_vocab_size()
        self.special_ids = frozenset(ids.values())

    def _init_fairseq_dict(self, path: Path) -> None:
        symbols = [line.split(" ")[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.bos, self.pad, self.eos, self.unk = 0, 1, 2, 3
        self.mask = 4 + len(symbols)
        self.vocab_size = self.mask + 1
        self.special_ids = frozenset({0, 1, 2, 3, self.mask})
        self.to_fairseq = np.full(self.bpe.get_vocab_size(), self.unk, dtype=np.int64)
        self.from_fairseq = {}
        for k, sym in enumerate(symbols):
            if sym.isdigit() and int(sym) < len(self.to_fairseq):
                self.to_fairseq[int(sym)] = 4 + k
                self.from_fairseq[4 + k] = int(sym)

    def encode(self, text: str) -> list[int]:
        ids = self.bpe.encode(text).ids
        return ids if self.to_fairseq is None else self.to_fairseq[ids].tolist()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = [e.ids for e in self.bpe.encode_batch(texts)]
        return out if self.to_fairseq is None else [self.to_fairseq[i].tolist() for i in out]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.to_fairseq is not None:
            ids = [self.from_fairseq[i] for i in ids if i in self.from_fairseq]
        return self.bpe.decode(ids)

    @staticmethod
    def train(sentences, out_dir: str | Path, vocab_size: int = 8000) -> "Tokenizer":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(sentences, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS),
                                show_progress=False)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        bpe.save_model(str(out_dir))
        return Tokenizer(out_dir)


def binarize(documents: list[list[str]], tok: Tokenizer) -> dict[str, np.ndarray]:
    """Documents (lists of sentences) -> token stream with ``</s>`` after each sentence, plus boundaries."""
    encoded = tok.encode_batch([s for doc in documents for s in doc])
    lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
    tokens = np.empty(int(lengths.sum()), dtype=np.int32)
    pos = 0
    for e in encoded:
        n = len(e)
        tokens[pos:pos + n] = e
        tokens[pos + n] = tok.eos
        pos += n + 1
    sent_ends = np.cumsum(lengths)
    doc_sizes = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
    doc_ends = sent_ends[np.cumsum(doc_sizes) - 1] if len(documents) else np.zeros(0, np.int64)
    return {"tokens": tokens, "sent_ends": sent_ends, "doc_ends": doc_ends}


def make_blocks(sent_ends: np.ndarray, doc_ends: np.ndarray, block: int, break_mode: str) -> np.ndarray:
    """[N, 2] (start, end) token ranges of at most ``block`` tokens."""
    if block < 1:
        raise ValueError("tokens_per_sample must be at least 2")
    total = int(sent_ends[-1]) if len(sent_ends) else 0
    if break_mode == "none":
        starts = np.arange(0, total, block)
        return np.stack([starts, np.minimum(starts + block, total)], 1)
    if break_mode != "complete_doc":
        raise ValueError(f"break_mode must be 'complete_doc' or 'none', got {break_mode!r}")
    doc_end_set = set(doc_ends.tolist())
    out, start, prev = [], 0, 0
    for end in sent_ends.tolist():
        if end - start > block and prev > start:  # the sentence does not fit: close the block before it
            out.append((start, prev))
            start = prev
        while end - start > block:  # a single sentence longer than a block
            out.append((start, start + block))
            start += block
        prev = end
        if end in doc_end_set:
            if end > start:
                out.append((start, end))
            start = end
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


class TextBlockDataset(torch.utils.data.Dataset):
    def __init__(self, npz_path: str | Path, *, tokens_per_sample: int, break_mode: str, bos: int):
        data = np.load(npz_path)
        self.tokens = data["tokens"]
        self.blocks = make_blocks(np.asarray(data["sent_ends"]), np.asarray(data["doc_ends"]),
                                  tokens_per_sample - 1, break_mode)
        if len(self.blocks) == 0:
            raise ValueError(f"{npz_path} holds no text")
        self.bos = bos
        self.sizes = (self.blocks[:, 1] - self.blocks[:, 0] + 1).astype(np.int64)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict:
        s, e = self.blocks[index]
        toks = np.concatenate([[self.bos], np.asarray(self.tokens[s:e], dtype=np.int64)])
        return {"id": index, "epoch": self.epoch, "tokens": toks}


@dataclass
class TextCollator:
    """Samples -> {source (corrupted), teacher_source (clean), padding_mask, mask, indices, num_masked}.

    With a ``RandomMaskV2Config`` (data2vec 2.0) tokens are not corrupted (the student drops masked positions):
    {source (clean) [B, T], padding_mask [B, T] or None, mask [B * M, T], indices, num_masked}, where each
    sample gets ``clone_batch`` (M) random masks over the batch length T, sample-major. As in fairseq, padded
    positions may be masked (every row masks the same count); num_masked counts masked non-padding positions.
    """

    mask_cfg: TokenMaskConfig | RandomMaskV2Config
    seed: int
    pad: int
    mask_idx: int
    special_ids: frozenset
    vocab_size: int

    def __post_init__(self):
        if isinstance(self.mask_cfg, BlockMaskV2Config):
            raise ValueError("data2vec 2.0 text uses random masking: set masking to a RandomMaskV2Config "
                             "(mask_prob, clone_batch), not a BlockMaskV2Config")

    def __call__(self, samples: list[dict]) -> dict:
        if isinstance(self.mask_cfg, RandomMaskV2Config):
            return self._collate_v2(samples)
        B, T = len(samples), max(len(s["tokens"]) for s in samples)
        clean = torch.full((B, T), self.pad, dtype=torch.long)
        corrupt = clean.clone()
        mask = torch.zeros(B, T, dtype=torch.bool)
        for b, s in enumerate(samples):
            n = len(s["tokens"])
            src, m = mask_tokens(s["tokens"], self.mask_cfg, seed=self.seed, epoch=s["epoch"], index=s["id"],
                                 mask_idx=self.mask_idx, special_ids=self.special_ids, vocab_size=self.vocab_size)
            clean[b, :n] = torch.from_numpy(s["tokens"])
            corrupt[b, :n] = torch.from_numpy(src)
            mask[b, :n] = torch.from_numpy(m)
        padding_mask = clean.eq(self.pad)
        return {"source": corrupt, "teacher_source": clean,
                "padding_mask": padding_mask if padding_mask.any() else None, "mask": mask,
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": int(mask.sum())}

    def _collate_v2(self, samples: list[dict]) -> dict:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        B, T = len(samples), max(len(s["tokens"]) for s in samples)
        source = torch.full((B, T), self.pad, dtype=torch.long)
        for b, s in enumerate(samples):
            source[b, :len(s["tokens"])] = torch.from_numpy(np.asarray(s["tokens"], dtype=np.int64))
        padding_mask = source.eq(self.pad)  # as the v1 path and fairseq
        # each sample with its own epoch, as the v1 path
        mask = torch.cat([draw_v2_masks(self.mask_cfg, T, seed=self.seed, epoch=s["epoch"], indices=[s["id"]])
                          for s in samples])
        M = self.mask_cfg.clone_batch
        num_masked = int((mask & ~padding_mask.repeat_interleave(M, 0)).sum())
        return {"source": source, "padding_mask": padding_mask if padding_mask.any() else None, "mask": mask,
                "indices": torch.tensor([s["id"] for s in samples]), "num_masked": num_masked}


def read_corpus_info(directory: str | Path) -> dict:
    p = Path(directory) / "corpus.json"
    return json.loads(p.read_text()) if p.is_file() else {}
