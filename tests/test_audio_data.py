"""Speech data pipeline on real files: manifest parsing and validation report, reading/resampling/mono,
normalisation, deterministic crops, length bucketing and sharding, collation with padding and span masks,
and the mid-epoch resume of the loader."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import soundfile as sf
import torch

import data2vec.modalities.audio.dataset as audio
from data2vec.modalities.audio.dataset import (AudioCollator, AudioDataset, BucketBatchSampler, build_audio_loader,
                                 read_manifest, validate_manifest)
from data2vec.data.skips import UnreadableSample
from data2vec.modalities.audio.encoder import conv_frame_lengths
from data2vec.modalities.audio.masking import SpanMaskConfig

CONV = [(8, 10, 5), (8, 3, 2)]  # (dim, kernel, stride): 4000 samples -> 398 frames


def _tone(n, rate=16000, f=220.0, seed=0):
    """A sine plus a little noise (pure synthesis would have exact zeros and perfect periodicity)."""
    t = np.arange(n) / rate
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture
def messy(tmp_path):
    """train.tsv with 6 good 16 kHz clips (one flac, one declared with a wrong length), one at 22.05 kHz,
    one stereo, and one each of empty, too short, corrupt and missing."""
    (tmp_path / "a").mkdir()
    rows = []
    for i, n in enumerate([16000, 24000, 8000, 40000, 12000, 20000]):
        rel = f"a/ok{i}.{'flac' if i == 1 else 'wav'}"
        sf.write(tmp_path / rel, _tone(n, seed=i), 16000)
        rows.append((rel, n + 1 if i == 5 else n))
    sf.write(tmp_path / "a/hi.wav", _tone(33075, 22050), 22050)  # 1.5 s at 22.05 kHz
    sf.write(tmp_path / "a/stereo.wav", np.stack([_tone(16000), _tone(16000, f=330.0)], 1), 16000)
    sf.write(tmp_path / "a/empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "a/short.wav", _tone(1000), 16000)
    (tmp_path / "a/corrupt.wav").write_text("not audio")
    rows += [("a/hi.wav", 33075), ("a/stereo.wav", 16000), ("a/empty.wav", 0), ("a/short.wav", 1000),
             ("a/corrupt.wav", 5), ("a/missing.wav", 16000)]
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n" + "".join(f"{p}\t{n}\textra\n" for p, n in rows))
    return tmp_path


def _validated(root, min_samples=4000):
    return validate_manifest(read_manifest(root / "train.tsv"), sample_rate=16000, min_samples=min_samples)


@pytest.mark.parametrize("threaded", [False, True])
def test_validate_counts_and_names_each_problem(messy, monkeypatch, threaded):
    if threaded:
        monkeypatch.setattr(audio, "_PARALLEL_PROBE_MIN", 1)
    m, report = _validated(messy)
    assert (report.total, report.usable, len(m)) == (12, 8, 8)
    assert dict(report.counts) == {"missing": 1, "unreadable": 1, "empty": 1, "too_short": 1, "resampled": 1,
                                   "multi_channel": 1, "size_mismatch": 1}
    text = report.summary()
    for part in ("train.tsv: 12 entries, 8 usable", "missing.wav", "corrupt.wav", "empty.wav", "short.wav",
                 "resampled 22050->16000 Hz", "hi.wav", "stereo.wav", "ok5.wav"):
        assert part in text
    assert m.paths[:6] == [f"a/ok{i}.{'flac' if i == 1 else 'wav'}" for i in range(6)]
    assert m.sizes[m.paths.index("a/hi.wav")] == 24000  # the real length at 16 kHz, not the declared one
    assert m.sizes[m.paths.index("a/ok5.wav")] == 20000


def test_nothing_usable_is_an_error_that_says_what_to_fix(messy):
    with pytest.raises(ValueError, match="no usable audio(.|\n)*lower data.min_sample_size"):
        _validated(messy, min_samples=10**6)
    (messy / "t.tsv").write_text(f"{messy}/elsewhere\na/ok0.wav\t16000\n")
    with pytest.raises(ValueError, match="1 missing(.|\n)*audio root on line 1"):
        validate_manifest(read_manifest(messy / "t.tsv"), sample_rate=16000, min_samples=0)


@pytest.mark.parametrize("text, line", [("{root}\nfile.wav 100\n", 2), ("{root}\nok.wav\t1\nb.wav\tten\n", 3),
                                        ("{root}\nb.wav\t-5\n", 2), ("a.wav\t100\n", 1), ("", 1)])
def test_malformed_manifest_names_file_and_line(tmp_path, text, line):
    (tmp_path / "t.tsv").write_text(text.format(root=tmp_path))
    with pytest.raises(ValueError, match=rf"t.tsv:{line}:"):
        read_manifest(tmp_path / "t.tsv")


def test_relative_root_is_relative_to_the_manifest(tmp_path):
    (tmp_path / "t.tsv").write_text("audio\n\nx.wav\t5\n")
    m = read_manifest(tmp_path / "t.tsv")
    assert (m.root, m.paths, m.sizes, m.source) == (tmp_path / "audio", ["x.wav"], [5], tmp_path / "t.tsv")


def test_read_resamples_to_16k_and_averages_channels(messy):
    m, _ = _validated(messy)
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=10**9, min_sample_size=4000, normalize=False, seed=1)
    i = m.paths.index("a/hi.wav")
    hi = ds[i]["source"]
    assert hi.dtype == torch.float32 and hi.shape == (ds.sizes[i],) == (24000,)
    assert np.argmax(np.abs(np.fft.rfft(hi.numpy()))) * 16000 / hi.numel() == pytest.approx(220, abs=1)
    stereo = ds[m.paths.index("a/stereo.wav")]["source"]
    torch.testing.assert_close(stereo, torch.from_numpy((_tone(16000) + _tone(16000, f=330.0)) / 2), atol=1e-4, rtol=0)


def test_normalise_and_deterministic_crop(messy):
    m, _ = _validated(messy)
    i = m.paths.index("a/ok3.wav")  # 40000 samples
    full = AudioDataset(m, sample_rate=16000, max_sample_size=10**9, min_sample_size=0, normalize=True, seed=1)[i]
    assert abs(full["source"].mean()) < 1e-5 and abs(full["source"].std() - 1) < 1e-3
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=1)
    x = ds[i]["source"]
    assert x.shape == (20000,) and ds.sizes[i] == 20000 and ds.sizes.dtype == np.int64
    start = int(torch.nonzero((full["source"] == x[0])).flatten()[0])
    assert torch.equal(full["source"][start:start + 20000], x)  # a window of the normalised clip
    again = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=1)
    assert torch.equal(again[i]["source"], x)  # same (seed, epoch, index): same crop, in any process
    ds.set_epoch(2)
    assert ds[i]["epoch"] == 2 and not torch.equal(ds[i]["source"], x)  # a new crop next epoch


def test_read_error_at_train_time_names_the_file(messy):
    m, _ = _validated(messy)
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=1)
    (messy / "a/ok4.wav").write_text("overwritten")
    with pytest.raises(UnreadableSample, match="ok4.wav"):
        ds[m.paths.index("a/ok4.wav")]
    with pytest.raises(ValueError, match="validate_manifest"):  # an unvalidated manifest with short entries
        AudioDataset(read_manifest(messy / "train.tsv"), sample_rate=16000, max_sample_size=20000,
                     min_sample_size=4000, normalize=True, seed=1)


def test_bucket_sampler_budget_coverage_determinism_and_sharding():
    sizes = np.random.default_rng(0).integers(1000, 10000, size=200)
    s = BucketBatchSampler(sizes, max_tokens=30000, seed=0)
    batches = s.batches(1)
    assert sorted(i for b in batches for i in b) == list(range(200))  # every index once
    assert all(len(b) * sizes[b].max() <= 30000 for b in batches)
    assert batches == BucketBatchSampler(sizes, max_tokens=30000, seed=0).batches(1) and batches != s.batches(2)
    s.set_epoch(1)
    assert list(s) == batches and len(s) == len(batches)
    capped = BucketBatchSampler(sizes, max_tokens=10**9, max_sentences=7, seed=0).batches(1)
    assert max(len(b) for b in capped) == 7
    ranks = [BucketBatchSampler(sizes, max_tokens=30000, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    r0, r1 = (r.batches(1) for r in ranks)
    assert len(r0) == len(r1) == len(ranks[0]) == len(batches) // 2
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}
    assert BucketBatchSampler([50000, 10], max_tokens=1000, seed=0).batches(1) in ([[0], [1]], [[1], [0]])


def _collator(pad, max_sample_size=10**6):
    return AudioCollator(frame_lengths_fn=functools.partial(conv_frame_lengths, conv_layers=CONV),
                         mask_cfg=SpanMaskConfig(mask_prob=0.5, mask_length=4), seed=0, pad=pad,
                         max_sample_size=max_sample_size)


SAMPLES = [{"id": i, "epoch": 1, "source": torch.randn(n)} for i, n in enumerate([4000, 2500, 3200])]


def test_collator_pads_with_sample_and_frame_masks():
    b = _collator(pad=True)(SAMPLES)
    frames = conv_frame_lengths(torch.tensor([4000, 2500, 3200]), CONV)
    assert b["source"].shape == (3, 4000) and b["mask"].shape == (3, int(frames[0]))
    assert b["padding_mask"].sum(1).tolist() == [0, 1500, 800]
    assert torch.equal(b["source"][1, :2500], SAMPLES[1]["source"]) and not b["source"][1, 2500:].any()
    assert (~b["frame_padding_mask"]).sum(1).tolist() == frames.tolist()
    assert not (b["mask"] & b["frame_padding_mask"]).any()  # padding never masked
    assert b["mask"].sum(1).unique().numel() == 1  # require_same_masks
    assert b["num_masked"] == int(b["mask"].sum()) > 0 and b["indices"].tolist() == [0, 1, 2]
    again = _collator(pad=True)(SAMPLES)
    assert torch.equal(again["mask"], b["mask"]) and torch.equal(again["source"], b["source"])
    same_len = _collator(pad=True)([dict(s, source=s["source"][:2500]) for s in SAMPLES])
    assert same_len["padding_mask"] is None and same_len["frame_padding_mask"] is None
    capped = _collator(pad=True, max_sample_size=3000)(SAMPLES)
    assert capped["source"].shape == (3, 3000) and capped["padding_mask"].sum(1).tolist() == [0, 500, 0]


def test_collator_without_padding_crops_to_the_shortest():
    b = _collator(pad=False)(SAMPLES)
    assert b["source"].shape == (3, 2500) and b["padding_mask"] is None and b["frame_padding_mask"] is None
    assert torch.equal(b["source"][1], SAMPLES[1]["source"])
    for row, s in zip(b["source"], SAMPLES):  # each row is a window of its clip
        start = int(torch.nonzero(s["source"] == row[0]).flatten()[0])
        assert torch.equal(s["source"][start:start + 2500], row)
    assert torch.equal(_collator(pad=False)(SAMPLES)["source"], b["source"])
    assert b["mask"].shape == (3, conv_frame_lengths(2500, CONV))


def test_loader_skips_without_loading_and_keeps_global_rng(messy):
    m, _ = _validated(messy)

    class Recording(AudioDataset):
        def __getitem__(self, index):
            self.loaded.append(index)
            return super().__getitem__(index)

    ds = Recording(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=0)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=40000, seed=0)
    ds.loaded = []
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    loader = build_audio_loader(ds, sampler, _collator(pad=True), num_workers=0, epoch=3, start_batch=2)
    tail = list(loader)
    assert len(loader) == len(tail) == len(sampler.batches(3)) - 2
    assert ds.loaded == [i for b in sampler.batches(3)[2:] for i in b]  # the first 2 batches never read
    assert torch.equal(torch.random.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], np_state)
    assert len(build_audio_loader(ds, sampler, _collator(pad=True), num_workers=0, epoch=3, start_batch=99)) == 0


@pytest.mark.parametrize("pad", [True, False])
def test_loader_resume_tail_equals_full_epoch_with_and_without_workers(messy, pad):
    m, _ = _validated(messy)
    ds = AudioDataset(m, sample_rate=16000, max_sample_size=20000, min_sample_size=4000, normalize=True, seed=0)
    sampler, col = BucketBatchSampler(ds.sizes, max_tokens=40000, seed=0), _collator(pad=pad)
    full = list(build_audio_loader(ds, sampler, col, num_workers=0, epoch=3))
    assert len(full) >= 3
    for workers in (0, 1):
        tail = list(build_audio_loader(ds, sampler, col, num_workers=workers, epoch=3, start_batch=2))
        assert len(tail) == len(full) - 2
        for a, b in zip(full[2:], tail):
            assert a.keys() == b.keys()
            for k, v in a.items():
                assert (v is None and b[k] is None) or (torch.equal(v, b[k]) if torch.is_tensor(v) else v == b[k])
    other = list(build_audio_loader(ds, sampler, col, num_workers=0, epoch=4))
    assert [b["indices"].tolist() for b in other] != [b["indices"].tolist() for b in full]
