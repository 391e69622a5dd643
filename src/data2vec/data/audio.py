"""Speech data for pretraining, with fairseq ``FileAudioDataset`` semantics.

manifest (``.tsv``) -> ``validate_manifest`` (report bad entries before training) -> ``AudioDataset``
(read, resample to 16 kHz, mono, normalise, random crop) -> ``BucketBatchSampler`` (length-bucketed
batches under a sample budget, sharded over ranks) -> ``AudioCollator`` (pad or crop, padding masks,
span masks) -> ``build_audio_loader``.

Every random choice (crop offset, batch order, mask) is drawn from a generator seeded by
``(seed, epoch, index)``: batches are the same in any worker process, on any rank and after a resume,
and the global RNG is never touched.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from data2vec.data.sampler import BucketBatchSampler, build_loader, rng as _rng
from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask

__all__ = ["AudioCollator", "AudioDataset", "BucketBatchSampler", "DataReport", "Manifest", "build_audio_loader",
           "read_manifest", "validate_manifest"]


@dataclass
class Manifest:
    root: Path
    paths: list[str]
    sizes: list[int]  # samples at the target rate (declared ones until validated)
    source: Path | None = None
    rates: list[int] = field(default_factory=list)  # file sample rates (after validation)

    def __len__(self) -> int:
        return len(self.paths)


def read_manifest(path: str | Path) -> Manifest:
    """fairseq manifest: line 1 = root directory, then ``relative/path<TAB>num_samples`` per line."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"{path} is empty: line 1 must be the audio root directory")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    paths, sizes = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[1].strip().lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'relative/path<TAB>num_samples', got {line!r}")
        paths.append(cols[0])
        sizes.append(int(cols[1]))
    return Manifest(root, paths, sizes, path)


@dataclass
class DataReport:
    """What ``validate_manifest`` found: counts per problem and a few example paths for each."""

    name: str
    total: int = 0
    usable: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def add(self, kind: str, path: str, detail: str = "") -> None:
        self.problems[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 5:
            ex.append(f"{path} ({detail})" if detail else path)

    def summary(self) -> str:
        lines = [f"{self.name}: {self.total} entries, {self.usable} usable"]
        for kind, n in sorted(self.problems.items()):
            lines.append(f"  {n} {kind}: e.g. {', '.join(self.examples[kind])}")
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def _probe(path: Path):
    try:
        return sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - any libsndfile failure means "unreadable"
        return e


def validate_manifest(manifest: Manifest, *, sample_rate: int, min_samples: int) -> tuple[Manifest, DataReport]:
    """Check every entry (header only, no decoding); keep what can be used, count and name the rest.

    Missing, unreadable, empty and (like fairseq) shorter-than-``min_samples`` files are dropped; other
    sample rates are kept and resampled on read; multi-channel files are averaged to mono. Sizes become
    the true lengths at ``sample_rate``.
    """
    report = DataReport(str(manifest.source.name if manifest.source else "manifest"), total=len(manifest))
    files = [manifest.root / p for p in manifest.paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(_probe, files))
    keep_paths, keep_sizes, keep_rates = [], [], []
    rates = Counter()
    for rel, declared, f, info in zip(manifest.paths, manifest.sizes, files, infos):
        if isinstance(info, Exception):
            report.add("missing" if not f.exists() else "unreadable", rel, "" if not f.exists() else str(info)[:80])
            continue
        if info.frames <= 0:
            report.add("empty", rel)
            continue
        size = int(round(info.frames * sample_rate / info.samplerate))
        if size < min_samples:
            report.add(f"shorter than min_sample_size={min_samples}", rel, f"{size} samples")
            continue
        if info.samplerate != sample_rate:
            rates[info.samplerate] += 1
            report.add(f"resampled to {sample_rate} Hz", rel, f"{info.samplerate} Hz")
        if info.channels > 1:
            report.add("multi-channel, averaged to mono", rel, f"{info.channels} ch")
        if declared != info.frames:
            report.add("length differs from the manifest (true length used)", rel, f"{declared} vs {info.frames}")
        keep_paths.append(rel)
        keep_sizes.append(size)
        keep_rates.append(info.samplerate)
    report.usable = len(keep_paths)
    if report.usable == 0:
        raise ValueError(f"no usable audio in {manifest.source}:\n{report.summary()}\n"
                         "fix the paths (line 1 of the manifest is the root directory) or the files")
    return Manifest(manifest.root, keep_paths, keep_sizes, manifest.source, keep_rates), report


def crop_offset(length: int, target: int, seed: int, epoch: int, index: int) -> int:
    """Random crop start (deterministic in seed, epoch, index)."""
    return int(_rng(seed, epoch, index, 1).integers(0, length - target + 1)) if length > target else 0


class AudioDataset(torch.utils.data.Dataset):
    def __init__(self, manifest: Manifest, *, sample_rate: int, max_sample_size: int, min_sample_size: int,
                 normalize: bool, seed: int):
        self.manifest, self.sample_rate, self.normalize, self.seed = manifest, sample_rate, normalize, seed
        self.max_sample_size, self.min_sample_size = max_sample_size, min_sample_size
        self.sizes = np.minimum(np.asarray(manifest.sizes, dtype=np.int64), max_sample_size)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.manifest)

    def read(self, index: int) -> np.ndarray:
        path = self.manifest.root / self.manifest.paths[index]
        try:
            wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"cannot read {path}: {e}") from None
        wav = wav.mean(axis=1)
        if rate != self.sample_rate:
            import soxr

            wav = soxr.resample(wav, rate, self.sample_rate).astype(np.float32)
        return wav

    def __getitem__(self, index: int) -> dict:
        wav = torch.from_numpy(np.ascontiguousarray(self.read(index)))
        if self.normalize:  # fairseq: F.layer_norm(wav, wav.shape)
            wav = torch.nn.functional.layer_norm(wav, wav.shape)
        if wav.numel() > self.max_sample_size:
            start = crop_offset(wav.numel(), self.max_sample_size, self.seed, self.epoch, index)
            wav = wav[start:start + self.max_sample_size]
        return {"id": index, "epoch": self.epoch, "source": wav}


class AudioCollator:
    """Samples -> batch dict with padding masks (samples and frames) and the span mask.

    ``pad=True`` right-pads to the longest clip; ``pad=False`` crops every clip to the shortest
    (fairseq ``enable_padding: false``), at a random offset deterministic in (seed, epoch, id).
    """

    def __init__(self, *, frame_lengths_fn: Callable, mask_cfg: SpanMaskConfig, seed: int, pad: bool,
                 max_sample_size: int):
        self.frame_lengths_fn, self.mask_cfg, self.seed = frame_lengths_fn, mask_cfg, seed
        self.pad, self.max_sample_size = pad, max_sample_size

    def __call__(self, samples: list[dict]) -> dict:
        samples = [s for s in samples if s["source"].numel() > 0]
        if not samples:
            raise ValueError("empty batch")
        epoch = samples[0]["epoch"]
        ids = [s["id"] for s in samples]
        lengths = torch.tensor([s["source"].numel() for s in samples])
        B = len(samples)
        if self.pad:
            T = int(lengths.max())
            source = torch.zeros(B, T)
            for b, s in enumerate(samples):
                source[b, : lengths[b]] = s["source"]
            padding_mask = torch.arange(T)[None, :] >= lengths[:, None]
        else:
            T = int(lengths.min())
            source = torch.stack([
                s["source"][(o := crop_offset(int(lengths[b]), T, self.seed, epoch, s["id"] + (1 << 30))):o + T]
                for b, s in enumerate(samples)])
            padding_mask = torch.zeros(B, T, dtype=torch.bool)
        frames = int(self.frame_lengths_fn(torch.tensor([T]))[0])
        if padding_mask.any():
            frame_lengths = self.frame_lengths_fn(lengths).clamp(max=frames)
            frame_padding_mask = torch.arange(frames)[None, :] >= frame_lengths[:, None]
        else:
            padding_mask = frame_padding_mask = None
        mask = torch.from_numpy(compute_span_mask(
            (B, frames), None if frame_padding_mask is None else frame_padding_mask.numpy(), self.mask_cfg,
            seed=self.seed, epoch=epoch, indices=np.asarray(ids)))
        return {"source": source, "padding_mask": padding_mask, "frame_padding_mask": frame_padding_mask,
                "mask": mask, "indices": torch.tensor(ids), "num_masked": int(mask.sum())}


def build_audio_loader(dataset: AudioDataset, sampler: BucketBatchSampler, collator: AudioCollator, *,
                       num_workers: int, epoch: int, start_batch: int = 0) -> torch.utils.data.DataLoader:
    """The loader for one epoch, starting after ``start_batch`` batches (skipped without loading them)."""
    return build_loader(dataset, sampler, collator, num_workers=num_workers, epoch=epoch, start_batch=start_batch)
