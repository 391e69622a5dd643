"""Sharded, streaming pretraining data (WebDataset tar shards) for speech, images and text.

For data that does not fit on one disk or in memory: ``data2vec shard`` writes a corpus as tar shards,
and ``data2vec pretrain --data SHARD_DIR`` streams them (the map-style readers stay the default).

Format. ``DIR/shards.json`` (the index: modality, the settings that shaped the samples, per shard its file
and sample count, the files dropped when writing) + ``DIR/<subset>-sizes.npy`` (each sample's length, for
batching without reading) + ``DIR/<subset>-ids.npy`` (the samples in the order they were written) +
``DIR/<subset>-NNNNNN.tar``. The shards are plain WebDataset tars (written
with ``webdataset.TarWriter``; ``webdataset.WebDataset`` reads them too): sample ``i`` is the members
``{i:09d}.<ext>`` (the audio file's own bytes, ``.wav``/``.flac``/...; the image file's own bytes; text:
the block's token ids with ``<s>``, ``.npy``) and ``{i:09d}.json`` (source path, label, length). ``i`` is
the sample's index in the map-style data set it came from (validated manifest, validated image folder,
text blocks), so crops, flips and masks, drawn from ``(seed, epoch, index)``, are those of the map-style
path. The writer puts the samples in a random order (seeded: ``--seed``), so a shard mixes classes,
speakers and documents; shard ``k`` holds ``ids[offsets[k]:offsets[k+1]]``, in that order.

Reading: why a batch count is enough to resume. Everything a rank reads in an epoch is a function of
``(seed, epoch, rank, world_size, num_workers, shuffle_buffer)`` and the index, computed before any
shard is opened (``plan_epoch``):

1. The shards are permuted by ``(seed, epoch)`` and dealt in that order, each to the rank with the least
   work so far (sum of sample lengths), then to that rank's worker with the least (``deal_shards``);
   ``W = max(1, num_workers)`` workers per rank. Every shard is read by exactly one worker of one rank.
2. A worker's sample stream is cut into chunks of ``shuffle_buffer`` samples (the shuffle buffer; a worker
   holds the undecoded bytes of two chunks, this one and the previous one, the substitutes' reserve). Each
   chunk is shuffled by ``(seed, epoch, rank, worker, chunk)``, sorted by length, shortest first (fairseq
   ``batch_by_size`` within the buffer: little padding), packed greedily under the batch budget (``len(batch) * longest <=
   max_tokens``, ``max_sentences``), and its batches are shuffled. A batch never spans chunks.
3. The rank's batches are the workers' batches interleaved round-robin (worker 0's first, worker 1's
   first, ..., worker 0's second, ...), the order torch's DataLoader returns an iterable data set's
   batches in; each batch carries its position and ``ShardLoader`` restores that order whatever the
   loader does. Ranks may plan different numbers of batches; every rank stops at the smallest count
   (DDP needs equal counts), the rest of the batches are dropped for that epoch (reported; the shard
   permutation changes every epoch, so a different tail is dropped each time). With one rank nothing is
   dropped: every sample is read exactly once per epoch.

So the trainer's checkpointed ``(epoch, batch_in_epoch)`` identifies the exact next sample on every rank
and worker: ``make_loader(epoch, start_batch)`` recomputes the plan and each worker starts at its first
batch whose position is ``>= start_batch``, reading from the chunk before that batch's chunk on (earlier
shards are not opened) and decoding nothing before it. Nothing else has to be stored in the checkpoint
(the alternative, per-worker sample offsets, would need the trainer to gather worker state). A resume must
keep ``world_size``, ``data.num_workers`` and the shard directory: the plan depends on all three, so the
trainer's conversion of a data position to another world size does not apply to shards.

Bad data: the writer drops what the map-style readers drop before training (audio headers, image
headers; listed in ``shards.json`` and in the run's skip summary). A sample that fails when decoded (or is
missing from a damaged shard) is replaced by the next readable sample of its chunk (``skips.substitute``
over the chunk's samples in a fixed shuffled order, then over the previous chunk's), decoded with the failed
sample's index as its random key, and named in ``batch["skipped"]``.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from data2vec.config import modality_name
from data2vec.data.sampler import PretrainData, rng
from data2vec.data.skips import UnreadableSample, substitute
from data2vec.errors import Data2VecError

INDEX = "shards.json"
FORMAT = "data2vec-shards/1"
DEFAULT_SAMPLES_PER_SHARD = 1000
DEFAULT_MAX_SHARD_BYTES = 1 << 30  # a new shard starts after this many bytes, whatever the count
DEFAULT_SHUFFLE_BUFFER = 1000  # samples per shuffle chunk (edit shards.json's shuffle_buffer to change it)
_KEY_DIGITS = 9


def is_shard_dir(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def sample_key(i: int) -> str:
    return f"{i:0{_KEY_DIGITS}d}"


# ---------------------------------------------------------------------------------------------- writing


def write_shards(out: str | Path, samples: Iterator[tuple[int, dict, int]], *, modality: str, subset: str, meta: dict,
                 skipped: list, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                 order_seed: int | None = None) -> dict:
    """Write ``samples`` ((sample index, members by extension, length), in the order given) as tar shards
    and the index.

    Shards are written under temporary names and the index last, so an interrupted run leaves no index
    (the directory is not taken for a shard directory). Returns the index."""
    import webdataset as wds

    if samples_per_shard < 1 or shuffle_buffer < 1:
        raise Data2VecError(f"--samples-per-shard and --buffer must be >= 1, got {samples_per_shard}, {shuffle_buffer}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / INDEX).exists():
        (out / INDEX).unlink()  # rewriting: the old index must not describe the new shards
    shards, sizes, ids, n = [], [], [], 0
    writer = f = tmp = None
    written = 0

    def close():
        nonlocal writer, f
        if writer is not None:
            writer.close()
            f.close()
            os.replace(tmp, out / shards[-1]["file"])
            writer = f = None

    for i, members, size in samples:
        if writer is None or shards[-1]["count"] >= samples_per_shard or written >= max_shard_bytes:
            close()
            name = f"{subset}-{len(shards):06d}.tar"
            tmp = out / (name + ".tmp")
            f = open(tmp, "wb")
            writer = wds.TarWriter(f, encoder=False, mtime=0.0)
            shards.append({"file": name, "count": 0})
            written = 0
        record = {"__key__": sample_key(i)}
        for ext, value in members.items():
            record[ext] = json.dumps(value).encode() if ext == "json" else value
            written += len(record[ext])
        writer.write(record)
        shards[-1]["count"] += 1
        sizes.append(int(size))
        ids.append(int(i))
        n += 1
    close()
    if n == 0:
        raise Data2VecError("nothing to write: the data set has no usable samples")
    ids_arr = np.asarray(ids, dtype=np.int64)
    if not np.array_equal(np.sort(ids_arr), np.arange(n)):
        raise Data2VecError("internal error: the written sample indices are not 0 .. n-1")
    by_id = np.empty(n, dtype=np.int64)
    by_id[ids_arr] = sizes
    np.save(out / f"{subset}-sizes.npy", by_id)
    np.save(out / f"{subset}-ids.npy", ids_arr)
    index = {"format": FORMAT, "modality": modality, "subset": subset, "num_samples": n,
             "shuffle_buffer": shuffle_buffer, "order_seed": order_seed, "meta": meta, "shards": shards,
             "skipped": [list(x) for x in skipped]}
    tmp_index = out / (INDEX + ".tmp")
    tmp_index.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp_index, out / INDEX)
    return index


def shard_dataset(cfg, out: str | Path, *, source: Callable, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                  seed: int = 0) -> dict:
    """Shard the training subset of ``cfg.data.path`` as the map-style reader of ``cfg``'s modality would read
    it, in an order shuffled by ``seed``. ``source`` is the modality's ``ModalitySpec.shard_source``:
    ``(cfg, out, seed) -> (samples, meta, skipped)``, the samples as ``write_shards`` takes them."""
    d = cfg.data
    src = Path(d.path)
    out = Path(out).resolve()
    if not d.path:
        raise Data2VecError("no data to shard: pass --data DIR")
    if src.resolve() == out:
        raise Data2VecError(f"--out {out} is the --data directory: write the shards elsewhere")
    samples, meta, skipped = source(cfg, out, seed)
    return write_shards(out, samples, modality=cfg.modality, meta=meta, skipped=skipped, subset=d.train_subset,
                        samples_per_shard=samples_per_shard, shuffle_buffer=shuffle_buffer,
                        max_shard_bytes=max_shard_bytes, order_seed=seed)


# ---------------------------------------------------------------------------------------------- the index


@dataclass
class ShardIndex:
    root: Path
    modality: str
    subset: str
    files: list[str]
    counts: np.ndarray  # samples per shard
    offsets: np.ndarray  # where each shard starts in ``ids``, and the total at the end
    ids: np.ndarray  # sample indices in the order written (shard after shard)
    sizes: np.ndarray  # length of every sample, by sample index
    shuffle_buffer: int
    meta: dict
    skipped: list

    def __len__(self) -> int:
        return int(self.offsets[-1])


def load_index(root: str | Path, modality: str | None = None) -> ShardIndex:
    """Read and check ``root/shards.json`` (and the sizes).

    Raises:
        Data2VecError: no index, a damaged one, another modality, or a shard file missing."""
    root = Path(root)
    path = root / INDEX
    fix = "re-create the directory with `data2vec shard`"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        counts = np.asarray([int(s["count"]) for s in info["shards"]], dtype=np.int64)
        files = [str(s["file"]) for s in info["shards"]]
        sizes = np.load(root / f"{info['subset']}-sizes.npy")
        ids = np.load(root / f"{info['subset']}-ids.npy")
        info["modality"] = modality_name(info["modality"])  # indexes written as `vision` read as `image`
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Data2VecError(f"cannot read the shard index {path} ({type(e).__name__}: {str(e)[:120]}): {fix}") from None
    if info.get("format") != FORMAT:
        raise Data2VecError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}: {fix}")
    if modality is not None and info["modality"] != modality_name(modality):
        raise Data2VecError(f"{root} holds {info['modality']} shards, not {modality}: pick a matching preset")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    if len(sizes) != offsets[-1] or len(ids) != offsets[-1] or (counts < 1).any():
        raise Data2VecError(f"{path}: the shard counts ({int(offsets[-1])} samples) do not match the sizes "
                            f"({len(sizes)}): {fix}")
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise Data2VecError(f"{len(missing)} shard file(s) listed in {path} are missing (e.g. {root / missing[0]}): "
                            "copy them back or re-create the directory with `data2vec shard`")
    return ShardIndex(root, info["modality"], info["subset"], files, counts, offsets, ids.astype(np.int64),
                      sizes.astype(np.int64),
                      int(info.get("shuffle_buffer", DEFAULT_SHUFFLE_BUFFER)), info.get("meta", {}),
                      info.get("skipped", []))


def check_meta(index: ShardIndex, **expected) -> None:
    """The settings that shaped the samples when they were written must equal the run's."""
    for k, v in expected.items():
        if index.meta.get(k) != v:
            raise Data2VecError(f"{index.root} was written with {k}={index.meta.get(k)!r} but the run has data.{k}="
                                f"{v!r}: set it to match, or re-shard with `data2vec shard --set data.{k}={v}`")


# ---------------------------------------------------------------------------------------------- the plan


def pack(ids: np.ndarray, sizes: np.ndarray, max_tokens: int, max_sentences: int | None) -> list[np.ndarray]:
    """Greedy ``batch_by_size`` of ``ids`` in the given order (``sizes`` of the ids)."""
    if len(ids) and sizes.min() == sizes.max():  # equal lengths (images): fixed-size batches
        per = max(1, max_tokens // max(1, int(sizes[0])))
        if max_sentences is not None:
            per = min(per, max_sentences)
        return [ids[i:i + per] for i in range(0, len(ids), per)]
    batches, start, longest = [], 0, 0
    for j, n in enumerate(sizes.tolist()):
        longest_new = max(longest, n)
        full = max_sentences is not None and j - start >= max_sentences
        if j > start and (full or (j - start + 1) * longest_new > max_tokens):
            batches.append(ids[start:j])
            start, longest_new = j, n
        longest = longest_new
    if len(ids) > start:
        batches.append(ids[start:])
    return batches


@dataclass
class StreamPlan:
    """One worker's epoch: its shards in order and its batches (sample ids) with their rank positions."""

    key: tuple[int, int, int]  # (seed, rank, worker)
    shards: list[int]
    chunks: list[np.ndarray]  # sample ids of each chunk, in stream order
    batches: list[tuple[int, int, np.ndarray]]  # (position in the rank's sequence, chunk, ids), by position


@dataclass
class EpochPlan:
    streams: list[StreamPlan]  # this rank's workers
    num_batches: int  # batches of this rank (every rank has the same)
    dropped: int  # samples of this rank's planned batches dropped to give the ranks equal counts


def _stream_batches(index: ShardIndex, shard_ids: list[int], sizes: np.ndarray, *, seed: int, epoch: int,
                    rank: int, worker: int, buffer: int, max_tokens: int, max_sentences: int | None):
    if shard_ids:
        stream = np.concatenate([index.ids[index.offsets[k]:index.offsets[k + 1]] for k in shard_ids])
    else:
        stream = np.zeros(0, np.int64)
    chunks, batches = [], []
    for c, start in enumerate(range(0, len(stream), buffer)):
        ids = stream[start:start + buffer]
        ids = ids[rng(seed, epoch, 17, rank, worker, c).permutation(len(ids))]
        ids = ids[np.argsort(sizes[ids], kind="stable")]  # shortest first: the last, partial batch holds the
        # longest samples (a lone short block might have no masked token)
        chunk_batches = pack(ids, sizes[ids], max_tokens, max_sentences)
        order = rng(seed, epoch, 18, rank, worker, c).permutation(len(chunk_batches))
        chunks.append(stream[start:start + buffer])
        batches += [(c, chunk_batches[j]) for j in order]
    return chunks, batches


def deal_shards(order: np.ndarray, cost: np.ndarray, world_size: int, num_workers: int) -> list[list[list[int]]]:
    """Shards (in ``order``) dealt to [rank][worker]: each to the rank with the least cost so far, then to that
    rank's worker with the least (ties to the lowest number). Ranks end within one shard's cost of each other,
    so few batches are dropped to equalise them."""
    rank_cost = np.zeros(world_size)
    worker_cost = np.zeros((world_size, num_workers))
    out: list[list[list[int]]] = [[[] for _ in range(num_workers)] for _ in range(world_size)]
    for k in order.tolist():
        r = int(np.argmin(rank_cost))
        w = int(np.argmin(worker_cost[r]))
        out[r][w].append(k)
        rank_cost[r] += cost[k]
        worker_cost[r, w] += cost[k]
    return out


def plan_epoch(index: ShardIndex, sizes: np.ndarray, *, seed: int, epoch: int, rank: int, world_size: int,
               num_workers: int, max_tokens: int, max_sentences: int | None = None) -> EpochPlan:
    """What rank ``rank`` reads in ``epoch`` (see the module docstring); ``sizes``: each sample's cost."""
    W = max(1, num_workers)
    num_shards = len(index.files)
    if num_shards < world_size:
        raise Data2VecError(f"{index.root} has {num_shards} shard(s) for {world_size} ranks: every rank needs at "
                            "least one; re-shard with a smaller --samples-per-shard")
    dealt = deal_shards(rng(seed, epoch, 16).permutation(num_shards), np.add.reduceat(sizes[index.ids], index.offsets[:-1]),
                        world_size, W)
    per_rank, mine = [], None
    for r in range(world_size):
        streams = []
        for w in range(W):
            shard_ids = dealt[r][w]
            chunks, batches = _stream_batches(index, shard_ids, sizes, seed=seed, epoch=epoch, rank=r, worker=w,
                                              buffer=index.shuffle_buffer, max_tokens=max_tokens,
                                              max_sentences=max_sentences)
            streams.append((shard_ids, chunks, batches))
        per_rank.append(sum(len(b) for _, _, b in streams))
        if r == rank:
            mine = streams
    n = min(per_rank)
    out, pos, dropped = [StreamPlan((seed, rank, w), s, c, []) for w, (s, c, _) in enumerate(mine)], 0, 0
    for rnd in range(max(len(b) for _, _, b in mine)):
        for w, (_, _, batches) in enumerate(mine):
            if rnd < len(batches):
                c, ids = batches[rnd]
                if pos < n:
                    out[w].batches.append((pos, c, ids))
                else:
                    dropped += len(ids)
                pos += 1
    return EpochPlan(out, n, dropped)


# ---------------------------------------------------------------------------------------------- reading


def _read_shard(path: Path, ids: np.ndarray, skip: int) -> Iterator[tuple[int, dict | None, str]]:
    """(sample id, members by extension or None, reason) for the shard's samples ``ids[skip:]`` (``ids``: the
    shard's samples in written order).

    Members of the first ``skip`` samples are passed over without reading their data. A damaged shard (or one
    that does not hold the samples the index lists, in that order) gives None for the samples it cannot
    provide; the reader substitutes them."""
    n = skip  # next sample expected, as a position in ids

    def groups(tf):
        cur_key, cur, ordinal = None, {}, -1
        for member in tf:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if key != cur_key:
                if cur_key is not None:
                    yield ordinal, int(cur_key), cur
                cur_key, cur, ordinal = key, {}, ordinal + 1
            if ordinal >= skip:
                cur[ext] = tf.extractfile(member).read()
        if cur_key is not None:
            yield ordinal, int(cur_key), cur

    reason = "missing from its shard"
    try:
        with tarfile.open(path, "r:") as tf:
            for ordinal, i, members in groups(tf):
                if ordinal < skip:
                    continue
                if ordinal >= len(ids) or i != ids[ordinal]:
                    reason = f"shard {path.name} does not match shards.json (re-create the directory)"
                    break
                yield i, members, ""
                n += 1
                if n >= len(ids):
                    return
    except (tarfile.TarError, OSError, ValueError) as e:
        reason = f"unreadable shard {path.name}: {type(e).__name__}: {str(e)[:100]}"
    for i in ids[n:].tolist():
        yield i, None, reason


def _stream_samples(index: ShardIndex, shard_ids: list[int], start: int) -> Iterator[tuple[int, dict | None, str]]:
    """A worker's samples in stream order from stream position ``start`` (earlier shards are not opened)."""
    pos = 0
    for k in shard_ids:
        count = int(index.counts[k])
        if pos + count > start:
            ids = index.ids[index.offsets[k]:index.offsets[k + 1]]
            yield from _read_shard(index.root / index.files[k], ids, max(0, start - pos))
        pos += count


def _identity(x):
    return x


class ShardStream(torch.utils.data.IterableDataset):
    """Yields ``(position, batch)`` for this rank's batches of one epoch from ``start_batch`` on.

    ``decode(members, entry_id, slot, epoch)`` -> sample dict (raises ``UnreadableSample``)."""

    def __init__(self, index: ShardIndex, plan: EpochPlan, decode: Callable, collate: Callable, *, epoch: int,
                 start_batch: int):
        self.index, self.plan, self.decode, self.collate = index, plan, decode, collate
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers = [info.id] if info is not None else range(len(self.plan.streams))
        if info is not None and info.num_workers != len(self.plan.streams):
            raise RuntimeError(f"planned for {len(self.plan.streams)} workers, running {info.num_workers}")
        iters = [self._worker(w) for w in workers]
        if len(iters) == 1:
            yield from iters[0]
            return
        pending = [next(it, None) for it in iters]  # in-process: merge the streams by position
        while any(p is not None for p in pending):
            j = min((p[0], j) for j, p in enumerate(pending) if p is not None)[1]
            yield pending[j]
            pending[j] = next(iters[j], None)

    def _worker(self, w: int):
        sp = self.plan.streams[w]
        todo = [(pos, c, ids) for pos, c, ids in sp.batches if pos >= self.start_batch]
        if not todo:
            return
        buffer = self.index.shuffle_buffer
        first_chunk = todo[0][1]
        load_from = max(0, first_chunk - 1)  # the previous chunk is the substitutes' reserve (see _pool)
        samples = _stream_samples(self.index, sp.shards, load_from * buffer)
        c_loaded, chunk, prev = load_from - 1, {}, {}
        for pos, c, ids in todo:
            while c_loaded < c:
                c_loaded += 1
                prev, chunk = chunk, {}
                for _ in range(len(sp.chunks[c_loaded])):
                    i, members, reason = next(samples)
                    chunk[i] = (members, reason)
            pool = self._pool(sp, c)
            data = {**prev, **chunk} if c > 0 else chunk
            where = {int(i): p for p, i in enumerate(pool)}

            def load(q: int, p: int, pool=pool, data=data) -> dict:
                entry, slot = int(pool[q]), int(pool[p])
                members, reason = data[entry]
                if members is None:
                    raise UnreadableSample(f"{self.index.root}/sample {sample_key(entry)}", reason)
                return self.decode(members, entry, slot, self.epoch)

            batch = self.collate([substitute(load, where[int(i)], len(pool)) for i in ids])
            yield pos, batch

    def _pool(self, sp: StreamPlan, c: int) -> np.ndarray:
        """Where substitutes for chunk ``c``'s unreadable samples come from, in the order they are tried:
        the chunk's samples in a fixed shuffled order (a damaged shard's samples are not tried in a row),
        then the previous chunk's (a chunk that is one damaged shard still fills its batches)."""
        own = sp.chunks[c][rng(*sp.key, self.epoch, 19, c).permutation(len(sp.chunks[c]))]
        return np.concatenate([own, sp.chunks[c - 1]]) if c > 0 else own


class ShardLoader:
    """Iterable of one epoch's batches in position order (``len`` = batches left)."""

    def __init__(self, stream: ShardStream, *, num_workers: int, epoch: int):
        self.stream, self.num_workers, self.epoch = stream, num_workers, epoch

    def __len__(self) -> int:
        return max(0, self.stream.plan.num_batches - self.stream.start_batch)

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            self.stream, batch_size=None, collate_fn=_identity, num_workers=self.num_workers, persistent_workers=False,
            generator=torch.Generator().manual_seed(int(self.epoch)),
            multiprocessing_context="fork" if self.num_workers > 0 else None)
        want, held = self.stream.start_batch, {}
        for pos, batch in loader:
            held[pos] = batch
            while want in held:
                yield held.pop(want)
                want += 1
        if held:
            raise RuntimeError(f"shard loader: batches {sorted(held)[:5]} came without batch {want}")


# ---------------------------------------------------------------------------------------------- the loader


class _Sampler:
    """What ``PretrainData.sampler`` offers for shards: ``len`` = batches per epoch (epoch 1)."""

    def __init__(self, plan_fn: Callable):
        self.plan_fn = plan_fn

    def __len__(self) -> int:
        return self.plan_fn(1).num_batches


def build_shard_data(index: ShardIndex, *, decode: Callable, collate: Callable, sizes: np.ndarray, seed: int,
                     dist, num_workers: int, max_tokens: int, max_sentences: int | None):
    """``PretrainData`` over a shard directory (the modalities' ``build_pretrain_data`` call this)."""
    cache: dict[int, EpochPlan] = {}

    def plan(epoch: int) -> EpochPlan:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = plan_epoch(index, sizes, seed=seed, epoch=epoch, rank=dist.rank,
                                      world_size=dist.world_size, num_workers=num_workers, max_tokens=max_tokens,
                                      max_sentences=max_sentences)
        return cache[epoch]

    def make_loader(epoch: int, start_batch: int = 0) -> ShardLoader:
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        stream = ShardStream(index, plan(epoch), decode, collate, epoch=epoch, start_batch=start_batch)
        return ShardLoader(stream, num_workers=num_workers, epoch=epoch)

    class Report:
        @staticmethod
        def skipped() -> list[tuple[str, str]]:
            return [tuple(x) for x in index.skipped]

        @staticmethod
        def summary() -> str:
            p = plan(1)
            drop = (f"; {p.dropped:,} samples of this rank dropped in epoch 1 to give every rank the same count"
                    if p.dropped else "")
            return (f"{index.root}: {len(index):,} {index.modality} samples in {len(index.files)} shards (streaming, "
                    f"shuffle buffer {index.shuffle_buffer}); {p.num_batches:,} batches per epoch and process{drop}"
                    + (f"; {len(index.skipped)} file(s) dropped when the shards were written" if index.skipped else ""))

    return PretrainData(_Sampler(plan), make_loader, Report(), len(index))
