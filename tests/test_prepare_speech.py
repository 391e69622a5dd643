"""The built-in speech corpus: manifests, transcripts, disjoint test voices, augmentation, determinism."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from data2vec.data.audio import read_manifest
from data2vec.data.prepare_speech import letters, prepare_speech
from data2vec.data.text_sources import english_sentences, normalize_transcript, number_to_words


def test_corpus_layout_and_transcripts(speech_corpus):
    stats = json.loads((speech_corpus / "corpus.json").read_text())
    assert stats["hours"] >= stats["requested_hours"]
    speakers = json.loads((speech_corpus / "speakers.json").read_text())
    seen = {}
    for split in ("train", "valid", "test"):
        m = read_manifest(speech_corpus / f"{split}.tsv")
        assert m.root == speech_corpus
        wrd = (speech_corpus / f"{split}.wrd").read_text().splitlines()
        ltr = (speech_corpus / f"{split}.ltr").read_text().splitlines()
        assert len(m) == len(wrd) == len(ltr) == stats["splits"][split]["utterances"]
        for rel, size, w, lt in zip(m.paths, m.sizes, wrd, ltr):
            info = sf.info(str(m.root / rel))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, size)
            assert re.fullmatch(r"[A-Z' ]+", w) and lt == letters(w)
            spk = rel.split("/")[2]
            assert speakers[spk]["split"] == split
            seen.setdefault(split, set()).add(spk)
    assert seen["train"].isdisjoint(seen["test"]) and seen["train"].isdisjoint(seen.get("valid", set()))
    assert len(seen["train"]) >= 5  # many voices, not one
    letters_in_dict = [ln.split()[0] for ln in (speech_corpus / "dict.ltr.txt").read_text().splitlines()]
    assert letters_in_dict[0] == "|" and "E" in letters_in_dict


def test_audio_is_augmented_not_raw_synthesis(speech_corpus):
    m = read_manifest(speech_corpus / "train.tsv")
    peaks = []
    for rel in m.paths[:10]:
        x, _ = sf.read(str(m.root / rel))
        peaks.append(np.abs(x).max())
        zero_run = np.diff(np.flatnonzero(np.abs(x) > 0), prepend=0).max()
        assert zero_run < 50, "exact digital silence left: dither missing"
        assert 0.1 * 16000 < x.size < 15 * 16000
    assert max(peaks) <= 1.0 and np.std(peaks) > 0.01  # random gain


def test_same_seed_same_corpus_any_worker_count(tmp_path):
    a = prepare_speech(tmp_path / "a", 0.004, seed=3, workers=1)
    b = prepare_speech(tmp_path / "b", 0.004, seed=3, workers=2)
    assert a["utterances"] == b["utterances"] > 0
    for split in ("train", "test"):
        ta = (tmp_path / "a" / f"{split}.tsv").read_text().splitlines()[1:]
        tb = (tmp_path / "b" / f"{split}.tsv").read_text().splitlines()[1:]
        assert ta == tb
        assert (tmp_path / "a" / f"{split}.wrd").read_text() == (tmp_path / "b" / f"{split}.wrd").read_text()
    rel = (tmp_path / "a" / "train.tsv").read_text().splitlines()[1].split("\t")[0]
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    # rerunning with the same request is a no-op; a different request into the same place is refused
    assert prepare_speech(tmp_path / "a", 0.004, seed=3)["utterances"] == a["utterances"]
    with pytest.raises(ValueError, match="another corpus"):
        prepare_speech(tmp_path / "a", 0.01, seed=3)


@pytest.mark.parametrize("text, expected", [
    ("In 1999, 3 cats", "IN ONE THOUSAND NINE HUNDRED NINETY NINE THREE CATS"),
    ("It's 50% off & \"free\"!", "IT'S FIFTY PERCENT OFF AND FREE"),
    ("Pay $1,200 now.", "PAY ONE THOUSAND TWO HUNDRED DOLLARS NOW"),
    ("well-known 'quotes'", "WELL KNOWN QUOTES"),
])
def test_normalize_transcript(text, expected):
    assert normalize_transcript(text) == expected


def test_number_to_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(40) == "forty"
    assert number_to_words(2_000_017) == "two million seventeen"


def test_sentences_are_clean_and_unique():
    s = english_sentences(limit=2000)
    assert len(s) == 2000 and len({x.lower() for x in s}) == 2000
    assert all(4 <= len(x.split()) <= 30 and x[-1] in ".!?" and "--" not in x for x in s)
