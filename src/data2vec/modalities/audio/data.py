"""Speech pretraining data: manifest -> validated dataset -> length-bucketed batches -> collator with masks.

Glue between the config and ``data2vec.modalities.audio.dataset`` (fairseq ``FileAudioDataset`` semantics).
Bad entries are reported before training starts (``DataReport.summary``); the run refuses to start
only when nothing usable remains. A clip that fails when it is read (NaN/Inf, changed since the check) is
replaced by the next one and named in ``batch["skipped"]`` (``data2vec.data.skips``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data2vec.data.sampler import PretrainData
from data2vec.data.shards import build_shard_data, check_meta, is_shard_dir, load_index
from data2vec.data.skips import CollateWithSkips
from data2vec.modalities.audio.dataset import (
    AudioCollator,
    AudioDataset,
    BucketBatchSampler,
    build_audio_loader,
    read_manifest,
    validate_manifest,
)
from data2vec.modalities.audio.encoder import conv_frame_lengths
from data2vec.modalities.audio.encoder_v2 import check_sample_rate
from data2vec.modalities.audio.shards import AudioDecoder


@dataclass(kw_only=True)
class AudioDataConfig:
    path: str = ""  # directory holding <train_subset>.tsv, or a shard directory (`data2vec shard`) (set with --data)
    train_subset: str = "train"
    sample_rate: int = 16000
    normalize: bool = True  # per-utterance zero mean, unit variance (fairseq task.normalize)
    max_sample_size: int = 320000  # random crop to this many samples
    min_sample_size: int = 32000  # skip shorter utterances
    max_tokens: int = 1400000  # batch budget: batch size x longest (cropped) utterance, in samples
    max_sentences: int | None = None  # cap on utterances per batch
    enable_padding: bool = True  # True: pad with masks; False: crop to the shortest (fairseq recipe)
    num_workers: int = 1  # data-loader worker processes


def build_pretrain_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    # imported here: data2vec.modalities.audio.dataset uses this package's masking (no import cycle at module load)

    d: AudioDataConfig = cfg.data
    if not d.path:
        raise ValueError("no training data: pass --data DIR (a directory with train.tsv), or set data.path")
    check_sample_rate(cfg.encoder, d.sample_rate)
    if is_shard_dir(d.path):
        return _build_shard_data(cfg, encoder, dist, seed=seed)
    manifest_path = Path(d.path) / f"{d.train_subset}.tsv"
    if not manifest_path.is_file():
        raise ValueError(f"{manifest_path} not found: --data must be a directory holding {d.train_subset}.tsv "
                         "(make one with `data2vec prepare speech --out DIR`)")
    manifest, report = validate_manifest(read_manifest(manifest_path), sample_rate=d.sample_rate,
                                         min_samples=d.min_sample_size)
    dataset = AudioDataset(manifest, sample_rate=d.sample_rate, max_sample_size=d.max_sample_size,
                           min_sample_size=d.min_sample_size, normalize=d.normalize, seed=seed,
                           skip_unreadable=True)
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=d.max_tokens, max_sentences=d.max_sentences,
                                 seed=seed, num_replicas=dist.world_size, rank=dist.rank)
    collator = CollateWithSkips(AudioCollator(
        frame_lengths_fn=functools.partial(conv_frame_lengths, conv_layers=encoder.conv_layers),
        mask_cfg=cfg.masking, seed=seed, pad=d.enable_padding, max_sample_size=d.max_sample_size))

    def make_loader(epoch: int, start_batch: int = 0):
        return build_audio_loader(dataset, sampler, collator, num_workers=d.num_workers, epoch=epoch,
                                  start_batch=start_batch)

    return PretrainData(sampler, make_loader, report, len(dataset))


def _build_shard_data(cfg, encoder, dist, *, seed: int) -> PretrainData:
    """Streaming from ``data2vec shard`` output (``data2vec.data.shards``): the same clips, crops and masks."""
    d: AudioDataConfig = cfg.data
    index = load_index(d.path, "audio")
    check_meta(index, sample_rate=d.sample_rate, min_sample_size=d.min_sample_size)
    sizes = np.minimum(index.sizes, d.max_sample_size)
    decode = AudioDecoder(d.sample_rate, d.min_sample_size, d.max_sample_size, d.normalize, seed, sizes)
    collator = CollateWithSkips(AudioCollator(
        frame_lengths_fn=functools.partial(conv_frame_lengths, conv_layers=encoder.conv_layers),
        mask_cfg=cfg.masking, seed=seed, pad=d.enable_padding, max_sample_size=d.max_sample_size))
    return build_shard_data(index, decode=decode, collate=collator, sizes=sizes, seed=seed, dist=dist,
                            num_workers=d.num_workers, max_tokens=d.max_tokens, max_sentences=d.max_sentences)
