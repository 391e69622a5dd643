"""Speech data for pretraining, with fairseq ``FileAudioDataset`` semantics.

manifest (``.tsv``) -> ``validate_manifest`` (report bad entries before training) -> ``AudioDataset``
(read, mono, resample to the target rate, normalise, random crop) -> ``BucketBatchSampler`` (length-bucketed
batches under a sample budget, sharded over ranks; shared with text, see ``data2vec.data.sampler``)
-> ``AudioCollator`` (pad or crop, padding masks, span masks; data2vec 2.0: crop, M block masks per clip)
-> ``build_audio_loader``.

Mirrors fairseq ``fairseq/data/audio/raw_audio_dataset.py`` (``FileAudioDataset``: skip clips shorter than
``min_sample_size``, ``F.layer_norm`` over the whole clip, random crop to ``max_sample_size``, crop the batch
to its shortest clip when padding is off). Deviations: the manifest is checked up front (fairseq fails
mid-epoch on a bad file), other sample rates and multi-channel files are converted instead of rejected,
and every random choice comes from a generator seeded by ``(seed, epoch, index)`` rather than the global
RNG, so batches are the same in any worker process, on any rank and after a resume.

Shapes: B = batch, T = samples (padded), S = samples of one clip, C = channels, F = conv frames.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from data2vec.data.masks_v2 import BlockMaskV2Config
from data2vec.data.sampler import BucketBatchSampler, build_loader, rng
from data2vec.data.skips import UnreadableSample, substitute
from data2vec.errors import Data2VecError
from data2vec.layers.padding import lengths_to_padding_mask
from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask
from data2vec.modalities.audio.masking_v2 import draw_v2_masks

__all__ = ["AudioCollator", "AudioDataset", "BucketBatchSampler", "DataReport", "Manifest", "build_audio_loader",
           "read_manifest", "validate_manifest"]

_PARALLEL_PROBE_MIN = 64  # probe headers in a thread pool from this many entries on (it is I/O bound)
_MAX_EXAMPLES = 5  # example paths kept per problem kind
_COLLATE_CROP_OFFSET = 1 << 30  # collator crops use index + offset: a different stream from the dataset crop


@dataclass
class Manifest:
    """A fairseq manifest: audio files relative to ``root`` with their lengths in samples."""

    root: Path
    paths: list[str]
    sizes: list[int]  # as declared in the file; at the target rate after validate_manifest
    source: Path | None = None  # the .tsv it came from

    def __len__(self) -> int:
        return len(self.paths)


def read_manifest(path: str | Path) -> Manifest:
    """Parse a fairseq ``.tsv``: line 1 = audio root, then ``relative/path<TAB>num_samples`` per line.

    Extra columns are ignored. A relative root is taken relative to the manifest's directory.

    Raises:
        Data2VecError: a line is not UTF-8 or not in that format (the message names the file and line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise Data2VecError(f"cannot read the manifest {path}: {e.strerror or e}") from None
    lines = [_decode_line(path, n, line) for n, line in enumerate(raw.splitlines(), start=1)]
    if not lines or not lines[0].strip():
        raise Data2VecError(f"{path}:1: line 1 must be the audio root directory, got an empty line")
    if "\t" in lines[0]:
        raise Data2VecError(f"{path}:1: line 1 must be the audio root directory, got an entry {lines[0]!r} "
                            "(fairseq manifests start with the root; add it as the first line)")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    paths, sizes = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0] or not _COUNT.fullmatch(cols[1].strip()):
            raise Data2VecError(f"{path}:{n}: expected 'relative/path<TAB>num_samples' (a tab, a count >= 0), "
                                f"got {line[:200]!r}")
        paths.append(cols[0])
        sizes.append(int(cols[1]))
    return Manifest(root, paths, sizes, path)


_COUNT = re.compile(r"[0-9]{1,18}")


def _decode_line(path: Path, n: int, line: bytes) -> str:
    """Line ``n`` of a manifest as text; names the file, line and byte when it is not UTF-8 (or has NULs)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Data2VecError(f"{path}:{n}: not UTF-8 text (byte {line[e.start]:#04x} at column {e.start + 1}): "
                            "write the manifest as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or rename the "
                            "file it names to an ASCII name") from None
    if "\x00" in text:
        raise Data2VecError(f"{path}:{n}: NUL byte in a text line: is {path.name} a manifest (.tsv) at all?")
    return text


# Problem kinds in report order: the first four drop the entry, the rest keep it (converted on read).
_DROPPED = ("missing", "unreadable", "empty", "too_short")
_KEPT = ("resampled", "multi_channel", "size_mismatch")


@dataclass
class DataReport:
    """What ``validate_manifest`` found: entries, usable ones, a count and example paths per problem kind."""

    name: str
    sample_rate: int
    min_samples: int
    total: int = 0
    usable: int = 0
    usable_samples: int = 0  # total usable audio at sample_rate
    counts: Counter = field(default_factory=Counter)  # kind (see _DROPPED, _KEPT) -> entries
    examples: dict[str, list[str]] = field(default_factory=dict)
    resampled_from: Counter = field(default_factory=Counter)  # source rate -> entries
    dropped: list[tuple[str, str]] = field(default_factory=list)  # every dropped entry: (path, reason)

    def add(self, kind: str, path: str, detail: str = "") -> None:
        self.counts[kind] += 1
        if kind in _DROPPED:
            self.dropped.append((path, f"{self._label(kind)}" + (f": {detail}" if detail else "")))
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(f"{path} ({detail})" if detail else path)

    def _label(self, kind: str) -> str:
        if kind == "resampled":
            rates = ", ".join(f"{r}->{self.sample_rate} Hz" for r in sorted(self.resampled_from))
            return f"resampled {rates}"
        return {"missing": "missing", "unreadable": "unreadable", "empty": "empty (0 frames)",
                "too_short": f"too short (< min_sample_size={self.min_samples} samples)",
                "multi_channel": "multi-channel, averaged to mono",
                "size_mismatch": "length differs from the manifest (real length used)"}[kind]

    def skipped(self) -> list[tuple[str, str]]:
        """Every entry dropped before training, as (path, reason) (``data2vec.data.skips.SkipLog``)."""
        return list(self.dropped)

    def summary(self) -> str:
        hours = self.usable_samples / self.sample_rate / 3600
        lines = [f"{self.name}: {self.total} entries, {self.usable} usable ({hours:.2f} h at {self.sample_rate} Hz)"]
        for verdict, kinds in (("skipped", _DROPPED), ("kept", _KEPT)):
            for kind in kinds:
                if self.counts[kind]:
                    more = ", ..." if self.counts[kind] > len(self.examples[kind]) else ""
                    lines.append(f"  {verdict}: {self.counts[kind]} {self._label(kind)}; "
                                 f"e.g. {', '.join(self.examples[kind])}{more}")
        return "\n".join(lines)


def _probe(path: Path) -> tuple[str | None, object]:
    """(None, soundfile header info) or (problem kind, detail). Reads the header only."""
    if not path.is_file():
        return "missing", ""
    try:
        return None, sf.info(str(path))
    except (RuntimeError, OSError) as e:  # libsndfile errors are RuntimeErrors
        return "unreadable", str(e).splitlines()[-1][:80]


def _fix_hint(report: DataReport, manifest: Manifest) -> str:
    hints = []
    if report.counts["missing"]:
        hints.append(f"check the audio root on line 1 of the manifest (now {manifest.root}) and the relative paths")
    if report.counts["unreadable"] or report.counts["empty"]:
        hints.append("re-create the unreadable/empty files (e.g. `data2vec prepare speech`)")
    if report.counts["too_short"]:
        hints.append(f"lower data.min_sample_size (now {report.min_samples}) or use longer clips")
    return "; ".join(hints) or "add entries to the manifest"


def validate_manifest(manifest: Manifest, *, sample_rate: int, min_samples: int) -> tuple[Manifest, DataReport]:
    """Check every entry's header (no decoding); keep what can be used, count and name the rest.

    Missing, unreadable, empty and (like fairseq) shorter-than-``min_samples`` files are dropped; other
    sample rates are kept and resampled on read; multi-channel files are averaged to mono. Sizes in the
    returned manifest are the real lengths at ``sample_rate``, not the declared ones.

    Raises:
        ValueError: nothing usable is left (with the report and what to fix).
    """
    report = DataReport(manifest.source.name if manifest.source else "manifest", sample_rate, min_samples,
                        total=len(manifest))
    files = [manifest.root / p for p in manifest.paths]
    if len(files) >= _PARALLEL_PROBE_MIN:
        with ThreadPoolExecutor(max_workers=16) as pool:
            probes = list(pool.map(_probe, files))
    else:
        probes = [_probe(f) for f in files]
    keep_paths, keep_sizes = [], []
    for rel, declared, (problem, info) in zip(manifest.paths, manifest.sizes, probes):
        if problem is not None:
            report.add(problem, rel, info)
            continue
        if info.frames <= 0:
            report.add("empty", rel)
            continue
        size = round(info.frames * sample_rate / info.samplerate)  # the length soxr produces
        if size < min_samples:
            report.add("too_short", rel, f"{size} samples")
            continue
        if info.samplerate != sample_rate:
            report.resampled_from[info.samplerate] += 1
            report.add("resampled", rel, f"{info.samplerate} Hz")
        if info.channels > 1:
            report.add("multi_channel", rel, f"{info.channels} channels")
        if declared != info.frames:
            report.add("size_mismatch", rel, f"{declared} declared, {info.frames} real")
        keep_paths.append(rel)
        keep_sizes.append(size)
    report.usable, report.usable_samples = len(keep_paths), sum(keep_sizes)
    if report.usable == 0:
        raise ValueError(f"no usable audio in {manifest.source or 'the manifest'}:\n{report.summary()}\n"
                         f"to fix: {_fix_hint(report, manifest)}")
    return Manifest(manifest.root, keep_paths, keep_sizes, manifest.source), report


def _crop_start(length: int, target: int, seed: int, epoch: int, index: int) -> int:
    """Random start of a ``target``-long window in ``length`` samples, fixed by (seed, epoch, index)."""
    return int(rng(seed, epoch, index, 1).integers(0, length - target + 1)) if length > target else 0


def decode_clip(source, path, *, sample_rate: int, min_sample_size: int) -> np.ndarray:
    """``AudioDataset.read`` of ``source`` (a file name or a binary file object, e.g. a clip from a shard),
    named ``path`` in errors."""
    try:
        wav_SC, rate = sf.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:  # libsndfile errors are RuntimeErrors
        raise UnreadableSample(path, f"unreadable: {str(e).splitlines()[-1][:120]} (changed after the "
                                     "manifest was validated?)") from None
    if wav_SC.shape[0] == 0:
        raise UnreadableSample(path, "empty: 0 frames now (it had audio when the manifest was validated)")
    bad = int(np.count_nonzero(~np.isfinite(wav_SC)))
    if bad:
        raise UnreadableSample(path, f"non-finite: {bad} NaN/Inf sample(s); re-create or remove the file")
    wav_S = wav_SC.mean(axis=1)
    if rate != sample_rate:
        wav_S = soxr.resample(wav_S, rate, sample_rate)
    if len(wav_S) < min_sample_size:
        raise UnreadableSample(path, f"too short: {len(wav_S)} samples now, < min_sample_size="
                                     f"{min_sample_size} (changed after the manifest was validated?)")
    return np.ascontiguousarray(wav_S, dtype=np.float32)


class AudioDataset(torch.utils.data.Dataset):
    """Mono float32 clips at ``sample_rate``, normalised per utterance, randomly cropped to ``max_sample_size``.

    Each sample is ``{"id": index, "epoch": epoch, "source": x_S}``; the epoch travels with the sample so
    the collator's crops and masks depend on it without the collator holding state in each worker.

    A clip that cannot be used when it is read (unreadable or empty now, shorter than ``min_sample_size``,
    NaN/Inf samples) raises ``UnreadableSample``; with ``skip_unreadable`` the next usable clip takes its
    place instead (``data2vec.data.skips.substitute``), cropped to the replaced clip's length so the batch
    keeps its cost, and the sample's ``"skipped"`` names the clips passed over.
    """

    def __init__(self, manifest: Manifest, *, sample_rate: int, max_sample_size: int, min_sample_size: int,
                 normalize: bool, seed: int, skip_unreadable: bool = False):
        if max_sample_size < 1:
            raise ValueError(f"max_sample_size must be >= 1, got {max_sample_size}")
        sizes = np.asarray(manifest.sizes, dtype=np.int64)
        short = np.flatnonzero(sizes < min_sample_size)
        if len(short):
            raise ValueError(f"{len(short)} entries are shorter than min_sample_size={min_sample_size} "
                             f"(e.g. {manifest.paths[short[0]]}): pass the manifest through validate_manifest")
        self.manifest, self.sample_rate, self.normalize, self.seed = manifest, sample_rate, normalize, seed
        self.max_sample_size, self.min_sample_size = max_sample_size, min_sample_size
        self.sizes = np.minimum(sizes, max_sample_size)  # effective lengths, for batching
        self.skip_unreadable = skip_unreadable
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.manifest)

    def read(self, index: int) -> np.ndarray:
        """The whole clip as float32 mono at ``sample_rate``, [S].

        Raises:
            UnreadableSample: the file cannot be decoded, is empty or too short now, or holds NaN/Inf.
        """
        path = self.manifest.root / self.manifest.paths[index]
        return decode_clip(str(path), path, sample_rate=self.sample_rate, min_sample_size=self.min_sample_size)

    def _load(self, index: int, slot: int) -> dict:
        """Clip ``index`` in the place of clip ``slot``: cropped with the slot's key, to at most its length."""
        x_S = torch.from_numpy(self.read(index))
        if self.normalize:  # fairseq: F.layer_norm(wav, wav.shape), before the crop
            x_S = F.layer_norm(x_S, x_S.shape)
        start = _crop_start(x_S.numel(), self.max_sample_size, self.seed, self.epoch, slot)
        x_S = x_S[start:start + self.max_sample_size]
        if index != slot:
            x_S = x_S[: int(self.sizes[slot])]
        return {"id": slot, "epoch": self.epoch, "source": x_S}

    def __getitem__(self, index: int) -> dict:
        if self.skip_unreadable:
            return substitute(self._load, index, len(self))
        return self._load(index, index)


class AudioCollator:
    """Samples -> batch with padding masks (samples and frames) and the span mask.

    ``pad=True`` right-pads with zeros to the longest clip; ``pad=False`` crops every clip to the shortest
    (fairseq ``enable_padding: false``) at an offset fixed by (seed, epoch, id). Either way no clip is longer
    than ``max_sample_size``. The epoch is read from the samples (see ``AudioDataset``).

    With a ``BlockMaskV2Config`` (data2vec 2.0) the batch is always cropped to its shortest clip (the fairseq
    v2 speech recipe; ``pad`` is ignored) and each sample gets ``clone_batch`` (M) 1-D block masks over the
    frames of that length, sample-major (``data2vec.modalities.audio.masking_v2.draw_v2_masks``).
    """

    def __init__(self, *, frame_lengths_fn: Callable, mask_cfg: SpanMaskConfig | BlockMaskV2Config, seed: int,
                 pad: bool, max_sample_size: int):
        if not isinstance(mask_cfg, (SpanMaskConfig, BlockMaskV2Config)):
            raise ValueError("data2vec 2.0 speech uses block masks: set masking to a BlockMaskV2Config "
                             f"(mask_prob, mask_length, ...), not a {type(mask_cfg).__name__}")
        self.frame_lengths_fn, self.mask_cfg, self.seed = frame_lengths_fn, mask_cfg, seed
        self.pad, self.max_sample_size = pad, max_sample_size
        self.v2 = isinstance(mask_cfg, BlockMaskV2Config)

    def __call__(self, samples: list[dict]) -> dict:
        """Returns source [B, T] float32, padding_mask [B, T] / frame_padding_mask [B, F] (True = padding,
        both None without padding), mask [B, F] (True = masked), indices [B] long and num_masked.

        data2vec 2.0: source [B, T] cropped to the shortest clip, both padding masks None, mask [B * M, F]
        (row ``b * M + c`` = clone ``c`` of sample ``b``), indices, num_masked = mask.sum()."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        epoch = samples[0]["epoch"]
        assert all(s["epoch"] == epoch for s in samples), "samples from different epochs in one batch"
        ids = [int(s["id"]) for s in samples]
        lengths = [s["source"].numel() for s in samples]
        if self.v2:
            return self._collate_v2(samples, ids, lengths, epoch)
        T = min(max(lengths) if self.pad else min(lengths), self.max_sample_size)
        source_BT = torch.zeros(len(samples), T, dtype=torch.float32)
        for b, (s, i) in enumerate(zip(samples, ids)):
            start = _crop_start(lengths[b], T, self.seed, epoch, i + _COLLATE_CROP_OFFSET)
            x_S = s["source"][start:start + T]
            source_BT[b, : x_S.numel()] = x_S
        lengths_B = torch.tensor([min(n, T) for n in lengths])
        num_frames = int(self.frame_lengths_fn(torch.tensor([T]))[0])
        padding_mask_BT = frame_padding_mask_BF = None
        if bool((lengths_B < T).any()):
            padding_mask_BT = lengths_to_padding_mask(lengths_B, T)
            frame_lengths_B = self.frame_lengths_fn(lengths_B).clamp(0, num_frames)
            frame_padding_mask_BF = lengths_to_padding_mask(frame_lengths_B, num_frames)
        mask_BF = torch.from_numpy(compute_span_mask(
            (len(samples), num_frames), None if frame_padding_mask_BF is None else frame_padding_mask_BF.numpy(),
            self.mask_cfg, seed=self.seed, epoch=epoch, indices=ids))
        return {"source": source_BT, "padding_mask": padding_mask_BT, "frame_padding_mask": frame_padding_mask_BF,
                "mask": mask_BF, "indices": torch.tensor(ids, dtype=torch.long), "num_masked": int(mask_BF.sum())}

    def _collate_v2(self, samples: list[dict], ids: list[int], lengths: list[int], epoch: int) -> dict:
        T = min(min(lengths), self.max_sample_size)
        source_BT = torch.empty(len(samples), T, dtype=torch.float32)
        for b, (s, i) in enumerate(zip(samples, ids)):
            start = _crop_start(lengths[b], T, self.seed, epoch, i + _COLLATE_CROP_OFFSET)
            source_BT[b] = s["source"][start:start + T]
        num_frames = int(self.frame_lengths_fn(torch.tensor([T]))[0])
        if num_frames < 1:
            raise ValueError(f"the shortest clip of the batch ({T} samples) gives no frame after the feature "
                             "encoder: raise data.min_sample_size")
        mask = draw_v2_masks(self.mask_cfg, num_frames, seed=self.seed, epoch=epoch, indices=ids)
        return {"source": source_BT, "padding_mask": None, "frame_padding_mask": None, "mask": mask,
                "indices": torch.tensor(ids, dtype=torch.long), "num_masked": int(mask.sum())}


def build_audio_loader(dataset: AudioDataset, sampler: BucketBatchSampler, collator: AudioCollator, *,
                       num_workers: int, epoch: int, start_batch: int = 0) -> torch.utils.data.DataLoader:
    """The loader for one epoch, from batch ``start_batch`` on (earlier ones are skipped without loading).

    Sets the epoch on the dataset and the sampler (the collator takes it from the samples). The loader
    draws from its own ``torch.Generator``, never the global RNG; its len() is the number of batches left.
    """
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    return build_loader(dataset, sampler, collator, num_workers=num_workers, epoch=epoch, start_batch=start_batch)


def audio_files(paths: list[str], *, sample_rate: int, normalize: bool) -> AudioDataset:
    """Whole clips of arbitrary audio files (no manifest, no crop) for inference: ``ds[i]["source"]``."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"audio file(s) not found: {', '.join(missing[:5])}")
    man = Manifest(Path("/"), [str(Path(p).resolve()) for p in paths], [0] * len(paths))
    return AudioDataset(man, sample_rate=sample_rate, max_sample_size=10**12, min_sample_size=0,
                        normalize=normalize, seed=0)
