"""Speech data pipeline: manifest validation report, reading/resampling, crops, bucketing, collation, resume."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import soundfile as sf
import torch

from data2vec.data.audio import (AudioCollator, AudioDataset, BucketBatchSampler, build_audio_loader,
                                 read_manifest, validate_manifest)
from data2vec.modalities.audio.encoder import conv_frame_lengths
from data2vec.modalities.audio.masking import SpanMaskConfig

CONV = [(8, 10, 5), (8, 3, 2)]


def _tone(n, rate=16000, f=220.0, seed=0):
    t = np.arange(n) / rate
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture
def messy(tmp_path):
    """A manifest with good files and every kind of bad entry."""
    (tmp_path / "a").mkdir()
    rows = []
    for i, n in enumerate([16000, 24000, 8000, 40000, 12000, 20000]):
        sf.write(tmp_path / "a" / f"ok{i}.flac" if i == 1 else tmp_path / "a" / f"ok{i}.wav", _tone(n, seed=i), 16000)
        rows.append((f"a/ok{i}.{'flac' if i == 1 else 'wav'}", n))
    sf.write(tmp_path / "a" / "hi.wav", _tone(22050, 22050), 22050)  # 1 s at 22.05 kHz
    rows.append(("a/hi.wav", 22050))
    sf.write(tmp_path / "a" / "stereo.wav", np.stack([_tone(16000), _tone(16000, f=330.0)], 1), 16000)
    rows.append(("a/stereo.wav", 16000))
    sf.write(tmp_path / "a" / "empty.wav", np.zeros(0, np.float32), 16000)
    rows.append(("a/empty.wav", 0))
    sf.write(tmp_path / "a" / "short.wav", _tone(1000), 16000)
    rows.append(("a/short.wav", 1000))
    (tmp_path / "a" / "corrupt.wav").write_text("not audio")
    rows.append(("a/corrupt.wav", 5))
    rows.append(("a/missing.wav", 16000))
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n" + "".join(f"{p}\t{n}\n" for p, n in rows))
    return tmp_path


def test_validate_reports_each_problem(messy):
    m, report = validate_manifest(read_manifest(messy / "train.tsv"), sample_rate=16000, min_samples=4000)
    assert (report.total, report.usable) == (12, 8)
    kinds = {k.split()[0].rstrip(","): n for k, n in report.problems.items()}
    assert kinds == {"missing": 1, "unreadable": 1, "empty": 1, "shorter": 1, "resampled": 1, "multi-channel": 1}
    text = report.summary()
    for name in ("missing.wav", "corrupt.wav", "empty.wav", "short.wav", "hi.wav", "stereo.wav", "8 usable"):
        assert name in text
    assert m.sizes[m.paths.index("a/hi.wav")] == 16000  # true length at the target rate


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "t.tsv").write_text(f"{tmp_path}\nnope.wav\t100\n")
    with pytest.raises(ValueError, match="no usable audio"):
        validate_manifest(read_manifest(tmp_path / "t.tsv"), sample_rate=16000, min_samples=0)


def test_malformed_manifest_line(tmp_path):
    (tmp_path / "t.tsv").write_text(f"{tmp_path}\nfile.wav 100\n")
    with pytest.raises(ValueError, match=r"t.tsv:2"):
        read_manifest(tmp_path / "t.tsv")


def test_dataset_reads_resamples_normalises_and_crops(messy):
    m, _ = validate_manifest(read_manifest(messy / "train.tsv"), sample_rate=16000, min_samples=4000)
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=1)
    hi = ds[m.paths.index("a/hi.wav")]["source"]
    assert hi.shape == (16000,)
    stereo = ds[m.paths.index("a/stereo.wav")]["source"]
    mono = torch.from_numpy((_tone(16000) + _tone(16000, f=330.0)) / 2)
    torch.testing.assert_close(stereo, torch.nn.functional.layer_norm(mono, mono.shape), atol=2e-3, rtol=0)
    i = m.paths.index("a/ok3.wav")  # 40000 samples, cropped to 20000
    x = ds[i]["source"]
    assert x.shape == (20000,) and ds.sizes[i] == 20000
    full = AudioDataset(m, sample_rate=16000, max_sample_size=10**9, min_sample_size=0, normalize=True, seed=1)[i]
    assert abs(full["source"].mean()) < 1e-5 and abs(full["source"].std() - 1) < 1e-3
    assert torch.equal(ds[i]["source"], x)  # deterministic for the same (seed, epoch, index)
    ds.set_epoch(2)
    assert not torch.equal(ds[i]["source"], x)  # a new crop next epoch


def test_bucket_sampler_budget_coverage_and_sharding():
    sizes = np.random.default_rng(0).integers(1000, 10000, size=200)
    s = BucketBatchSampler(sizes, max_tokens=30000, seed=0)
    batches = s.batches(1)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) * sizes[b].max() <= 30000 for b in batches)
    assert batches == s.batches(1) and batches != s.batches(2)
    capped = BucketBatchSampler(sizes, max_tokens=10**9, max_sentences=7, seed=0).batches(1)
    assert max(len(b) for b in capped) == 7
    r0 = BucketBatchSampler(sizes, max_tokens=30000, seed=0, num_replicas=2, rank=0).batches(1)
    r1 = BucketBatchSampler(sizes, max_tokens=30000, seed=0, num_replicas=2, rank=1).batches(1)
    assert len(r0) == len(r1) and r0 == batches[0::2][: len(r0)] and r1 == batches[1::2][: len(r1)]
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}
    assert BucketBatchSampler([50000, 10], max_tokens=1000, seed=0).batches(1) in ([[0], [1]], [[1], [0]])


def _collator(pad):
    return AudioCollator(frame_lengths_fn=functools.partial(conv_frame_lengths, conv_layers=CONV),
                         mask_cfg=SpanMaskConfig(mask_prob=0.5, mask_length=4), seed=0, pad=pad, max_sample_size=10**6)


def test_collator_padding_masks_and_span_masks():
    samples = [{"id": i, "epoch": 1, "source": torch.randn(n)} for i, n in enumerate([4000, 2500, 3200])]
    b = _collator(pad=True)(samples)
    assert b["source"].shape == (3, 4000)
    assert b["padding_mask"].sum(1).tolist() == [0, 1500, 800]
    assert torch.equal(b["source"][1, :2500], samples[1]["source"]) and not b["source"][1, 2500:].any()
    frames = conv_frame_lengths(torch.tensor([4000, 2500, 3200]), CONV)
    assert (~b["frame_padding_mask"]).sum(1).tolist() == frames.tolist()
    assert not (b["mask"] & b["frame_padding_mask"]).any()  # padding never masked
    assert b["mask"].sum(1).unique().numel() == 1  # require_same_masks
    assert b["num_masked"] == int(b["mask"].sum()) > 0
    assert torch.equal(_collator(pad=True)(samples)["mask"], b["mask"])  # deterministic
    cropped = _collator(pad=False)(samples)
    assert cropped["source"].shape == (3, 2500) and cropped["padding_mask"] is None
    assert torch.equal(cropped["source"][1], samples[1]["source"])


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_resumes_mid_epoch_without_reloading(messy, workers):
    m, _ = validate_manifest(read_manifest(messy / "train.tsv"), sample_rate=16000, min_samples=4000)
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=0)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=40000, seed=0)
    col = _collator(pad=True)
    full = list(build_audio_loader(ds, sampler, col, num_workers=workers, epoch=3))
    tail = list(build_audio_loader(ds, sampler, col, num_workers=workers, epoch=3, start_batch=2))
    assert len(full) >= 3 and len(tail) == len(full) - 2
    for a, b in zip(full[2:], tail):
        assert torch.equal(a["source"], b["source"]) and torch.equal(a["mask"], b["mask"])
    ref = list(build_audio_loader(ds, sampler, col, num_workers=0, epoch=3))
    assert all(torch.equal(a["source"], b["source"]) for a, b in zip(full, ref))  # workers change nothing
