"""The built-in speech corpus: manifests, transcripts, held-out voices, augmentation, determinism;
and the text sources it speaks (sentences, transcript normalisation)."""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data2vec.data import prepare_speech as ps
from data2vec.data import text_sources
from data2vec.data.text_sources import english_sentences, normalize_transcript, number_to_words, ordinal_to_words

HOURS = 0.005  # about 18 s of audio, 5 utterances


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "corpus"
    ps.prepare_speech(out, HOURS, seed=0, workers=2)
    return out


def _manifest(path: Path) -> tuple[str, list[tuple[str, int]]]:
    root, *rows = path.read_text().splitlines()
    return root, [(rel, int(n)) for rel, n in (row.split("\t") for row in rows)]


def test_manifests_transcripts_and_dictionary(corpus):
    stats = json.loads((corpus / "corpus.json").read_text())
    speakers = json.loads((corpus / "speakers.json").read_text())
    assert stats["hours"] >= HOURS and stats["utterances"] == sum(s["utterances"] for s in stats["splits"].values())
    train_letters = Counter()
    for split in ps.SPLITS:
        root, rows = _manifest(corpus / f"{split}.tsv")
        wrd = (corpus / f"{split}.wrd").read_text().splitlines()
        ltr = (corpus / f"{split}.ltr").read_text().splitlines()
        assert root == str(corpus.resolve())
        assert len(rows) == len(wrd) == len(ltr) == stats["splits"][split]["utterances"]
        for (rel, n), w, lt in zip(rows, wrd, ltr):
            info = sf.info(str(Path(root) / rel))
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, n, "PCM_16")
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", w)
            assert lt == " ".join(" ".join(word) + " |" for word in w.split()) == ps.letters(w)
            _, rel_split, speaker, _ = rel.split("/")
            assert rel_split == split == speakers[speaker]["split"]
        if split == "train":
            train_letters.update(c for lt in ltr for c in lt.split())
    ranked = [(c, int(n)) for c, n in (ln.split() for ln in (corpus / "dict.ltr.txt").read_text().splitlines())]
    assert dict(ranked) == dict(train_letters) and "|" in dict(ranked)
    assert [n for _, n in ranked] == sorted((n for _, n in ranked), reverse=True)


def test_audio_is_dithered_trimmed_and_not_clipped(corpus):
    for path in sorted(corpus.glob("wav/*/*/*.wav")):
        x, _ = sf.read(str(path), dtype="int16")
        nonzero = np.flatnonzero(x)
        assert np.diff(nonzero, prepend=-1, append=x.size).max() < 50, f"{path}: exact digital silence left"
        assert np.abs(x.astype(np.int32)).max() < 32767, f"{path}: clipped"
        assert 0.5 * 16000 < x.size <= ps.MAX_SECONDS * 16000


def test_augment_trims_silence_perturbs_speed_and_adds_noise():
    rate = 22050
    tone = 0.8 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate)  # 0.5 s between 1 s and 2 s of zeros
    x = np.concatenate([np.zeros(rate), tone, np.zeros(2 * rate)]).astype(np.float32)
    lengths = []
    for seed in range(8):
        y = ps.augment(x, rate, np.random.default_rng(seed))
        assert y.dtype == np.float32 and np.all(y != 0) and np.abs(y).max() < 0.75
        speech = 0.5 * 16000 / np.array([1.1, 0.9])  # speed factor 0.9..1.1
        assert speech[0] + 0.2 * 16000 - 2 <= y.size <= speech[1] + 0.6 * 16000 + 2  # 0.1-0.3 s each side
        lengths.append(y.size)
    assert len(set(lengths)) == 8


def test_test_and_valid_voices_are_held_out():
    groups = ps.voice_groups(workers=2)
    speakers = ps.build_speakers(0, groups, ps.flite_voices())
    assert len(speakers) >= 150 and len({s["id"] for s in speakers}) == len(speakers)
    group_of = {v: g for g in groups for v in g.split("=")}
    voice = {s["id"]: (s["engine"], group_of.get(s["variant"], s["voice"].rstrip("0123456789"))) for s in speakers}
    by_split = {split: {s["id"] for s in speakers if s["split"] == split} for split in ps.SPLITS}
    assert all(len(by_split[split]) >= 0.05 * len(speakers) for split in ps.SPLITS)
    train_voices = {voice[i] for i in by_split["train"]}
    for split in ("valid", "test"):
        assert not by_split[split] & by_split["train"]
        assert not {voice[i] for i in by_split[split]} & train_voices, f"a {split} voice is also in train"
    assert {s["engine"] for s in speakers if s["split"] == "test"} == {"espeak-ng", "flite"}
    pools = ps.speakable_sentences(0)
    assert not set(pools["train"]) & set(pools["test"]) and not set(pools["train"]) & set(pools["valid"])
    flite = ps.flite_voices()
    assert ps.build_speakers(0, groups, flite) == speakers != ps.build_speakers(1, groups, flite)


def test_train_utterances_never_speak_a_held_out_sentence_s_words(tmp_path, monkeypatch):
    """Disjoint sentence pools can still share spoken words (the same quotation in two books): a train utterance
    that draws such a twin draws again; one that does not is exactly what it was."""
    pools = {"train": ["Welcome the coming, speed the parting guest.", "A cat sat on the mat."],
             "valid": ["A dog ran far."], "test": ["Welcome the coming; speed the parting guest!"]}
    assert not set(pools["train"]) & set(pools["test"])
    monkeypatch.setattr(ps, "_synthesize", lambda spk, text, rng: (np.zeros(1600, np.float32), 16000))
    monkeypatch.setattr(ps, "augment", lambda x, rate, rng, sample_rate=16000: x)
    spk = {"id": "spk", "split": "train"}
    ps._init_worker(str(tmp_path), 0, 16000, [spk], pools)
    words = [ps.make_utterance(i)["words"] for i in range(40)]
    assert set(words) == {"A CAT SAT ON THE MAT"}
    ps._init_worker(str(tmp_path), 0, 16000, [spk], {**pools, "test": ["Another test sentence."]})
    assert len({ps.make_utterance(i)["words"] for i in range(40)}) == 2  # no twin: both train sentences spoken


def test_same_corpus_for_any_worker_count(corpus, tmp_path):
    other = tmp_path / "one_worker"
    ps.prepare_speech(other, HOURS, seed=0, workers=1)
    for name in [f"{s}.{ext}" for s in ps.SPLITS for ext in ("tsv", "wrd", "ltr")] + ["dict.ltr.txt", "speakers.json"]:
        a, b = (corpus / name).read_text(), (other / name).read_text()
        if name.endswith(".tsv"):  # the root line names each directory
            a, b = a.split("\n", 1)[1], b.split("\n", 1)[1]
        assert a == b, name
    wavs = sorted(p.relative_to(corpus) for p in corpus.glob("wav/*/*/*.wav"))
    assert wavs == sorted(p.relative_to(other) for p in other.glob("wav/*/*/*.wav"))
    assert all((corpus / w).read_bytes() == (other / w).read_bytes() for w in wavs)
    fingerprint = json.loads((corpus / "corpus.json").read_text())["fingerprint"]
    assert fingerprint == json.loads((other / "corpus.json").read_text())["fingerprint"]
    assert set(fingerprint) == {s for s in ps.SPLITS if (corpus / f"{s}.tsv").is_file()}
    # a corpus made before corpus.json held a fingerprint gets it when the same request is made again
    info = json.loads((other / "corpus.json").read_text())
    del info["fingerprint"]
    (other / "corpus.json").write_text(json.dumps(info))
    assert ps.prepare_speech(other, HOURS, seed=0)["fingerprint"] == fingerprint
    assert json.loads((other / "corpus.json").read_text())["fingerprint"] == fingerprint
    # one changed sample of one wav changes that split's audio fingerprint and nothing else
    wav = other / _manifest(other / "train.tsv")[1][0][0]
    x, sr = sf.read(wav, dtype="int16")
    x[len(x) // 2] ^= 1
    sf.write(wav, x, sr, subtype="PCM_16")
    changed = ps.corpus_fingerprint(other)
    assert changed["train"]["audio"] != fingerprint["train"]["audio"]
    assert changed["train"]["text"] == fingerprint["train"]["text"]
    assert {k: v for k, v in changed.items() if k != "train"} == {k: v for k, v in fingerprint.items() if k != "train"}
    # the same request again is a no-op; another request into the same directory is refused
    again = ps.prepare_speech(other, HOURS, seed=0)
    assert again["utterances"] == json.loads((corpus / "corpus.json").read_text())["utterances"]
    with pytest.raises(ValueError, match="another corpus"):
        ps.prepare_speech(other, HOURS, seed=1)
    # an older corpus (no fingerprint yet) with a file gone: one line that says what to do, not a traceback
    (other / "corpus.json").write_text(json.dumps(info))
    wav.unlink()
    with pytest.raises(ValueError, match="is incomplete: .*cannot be read; delete"):
        ps.prepare_speech(other, HOURS, seed=0)


def test_cli_arguments_and_missing_tools(monkeypatch, tmp_path):
    parser = argparse.ArgumentParser()
    ps.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "x"), "--hours", "0.5"])
    assert (args.hours, args.seed, args.workers) == (0.5, 0, None)
    monkeypatch.setattr(ps.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="apt-get install espeak-ng flite"):
        ps.run(args)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("text, expected", [
    ("In 1999, 3 cats", "IN ONE THOUSAND NINE HUNDRED NINETY NINE THREE CATS"),
    ("It's 50% off & \"free\"!", "IT'S FIFTY PERCENT OFF AND FREE"),
    ("Pay $1,200 now, or $1.05 later.", "PAY ONE THOUSAND TWO HUNDRED DOLLARS NOW OR ONE DOLLAR FIVE CENTS LATER"),
    ("The 21st of 2,000,000; the 3rd @ 2+2=4.", "THE TWENTY FIRST OF TWO MILLION THE THIRD AT TWO PLUS TWO EQUALS FOUR"),
    ("Mr. Smith's well-known 'quotes' (pi is 3.14)...", "MISTER SMITH'S WELL KNOWN QUOTES PI IS THREE POINT ONE FOUR"),
    ("  Agent 007:\tdon't\n", "AGENT ZERO ZERO SEVEN DON'T"),
])
def test_normalize_transcript(text, expected):
    assert normalize_transcript(text) == expected


def test_number_words():
    assert [number_to_words(n) for n in (0, 13, 40, 105)] == ["zero", "thirteen", "forty", "one hundred five"]
    assert number_to_words(2_000_017) == "two million seventeen"
    assert number_to_words(1_234_567) == ("one million two hundred thirty four thousand five hundred sixty seven")
    assert [ordinal_to_words(n) for n in (1, 2, 3, 12, 20, 45, 100)] == [
        "first", "second", "third", "twelfth", "twentieth", "forty fifth", "one hundredth"]


def test_english_sentences_are_clean_unique_and_seeded(monkeypatch, tmp_path):
    s = english_sentences()
    assert len(s) > 30000 and len({x.lower() for x in s}) == len(s)
    assert all(4 <= len(x.split()) <= 30 and x[0].isupper() and x[-1] in ".!?" and "--" not in x for x in s)
    sample = english_sentences(200, seed=1)
    assert len(sample) == 200 and set(sample) <= set(s)
    assert sample == english_sentences(200, seed=1) != english_sentences(200, seed=2)
    assert text_sources.split_sentences("Mr. Smith met J. Doe. He left! Did she?") == [
        "Mr. Smith met J. Doe.", "He left!", "Did she?"]
    monkeypatch.setattr(text_sources, "FORTUNES_DIR", tmp_path / "none")
    monkeypatch.setattr(text_sources, "GCIDE", tmp_path / "none.dz")
    with pytest.raises(RuntimeError, match="apt-get install fortunes dict-gcide"):
        english_sentences()
