"""The few real recordings on this machine as an ASR test set (fairseq layout), for an honest
out-of-domain number next to the synthetic corpus.

    data2vec prepare real-speech --out data/real-speech
    data2vec evaluate asr runs/ft-asr --data data/real-speech --subset test

Debian's ``pocketsphinx-testdata``: 5 LibriVox utterances (``librivox/``, read "Sense and Sensibility",
about 3-8 s each) and 5 short card names (``cards/``), 16 kHz mono. Writes ``test.tsv`` (root = the
package's data directory, nothing is copied), ``test.wrd`` (transcripts normalised like the synthetic
corpus: upper case, numbers as words) and ``test.ltr``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import soundfile as sf

from data2vec.asr.dictionary import words_to_letters
from data2vec.data.text_sources import normalize_transcript

ROOT = Path("/usr/share/pocketsphinx/test/data")
SETS = {"librivox": "transcription", "cards": "cards.transcription"}


def read_transcriptions(root: Path = ROOT) -> list[tuple[str, str]]:
    """(relative wav path, words) for every utterance, in file order."""
    rows = []
    for sub, name in SETS.items():
        path = root / sub / name
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
            if m and (root / sub / f"{m.group(2)}.wav").is_file():
                rows.append((f"{sub}/{m.group(2)}.wav", normalize_transcript(m.group(1))))
    return rows


def prepare_real_speech(out_dir: str | Path, root: Path = ROOT) -> Path:
    rows = read_transcriptions(root)
    if not rows:
        raise ValueError(f"no recordings under {root}: install Debian's pocketsphinx-testdata (make setup does)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tsv = [str(root)] + [f"{p}\t{sf.info(str(root / p)).frames}" for p, _ in rows]
    (out / "test.tsv").write_text("\n".join(tsv) + "\n")
    (out / "test.wrd").write_text("".join(w + "\n" for _, w in rows))
    (out / "test.ltr").write_text("".join(words_to_letters(w) + "\n" for _, w in rows))
    seconds = sum(sf.info(str(root / p)).duration for p, _ in rows)
    (out / "info.json").write_text(json.dumps({"source": str(root), "utterances": len(rows),
                                               "seconds": round(seconds, 1)}, indent=2) + "\n")
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory (test.tsv, test.wrd, test.ltr)")


def run(args) -> int:
    out = prepare_real_speech(args.out)
    info = json.loads((out / "info.json").read_text())
    print(f"{out}: {info['utterances']} real utterances, {info['seconds']} s (pocketsphinx-testdata)")
    return 0
