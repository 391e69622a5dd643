"""The built-in speech corpus: real English sentences spoken by espeak-ng and flite voices.

    data2vec prepare speech --out data/speech --hours 1

A *speaker* is a fixed voice configuration: (engine, voice, variant, base speed, base pitch).
- espeak-ng: 7 English accents x the variants in ``espeak-ng-data/voices/!v`` (about 100), with a
  base rate ``-s`` 130-200 words/min and pitch ``-p`` 20-80.
- flite: its full-domain voices (``kal``, ``kal16``, ``awb``, ``rms``, ``slt``), with a base
  ``duration_stretch`` and ``int_f0_target_mean`` (Hz).
Held-out voices: whole espeak variants (variants that sound identical are grouped first) and whole
flite voices go to valid or test only, so no test or valid voice timbre is heard in train. Sentences
are split the same way, so no test sentence occurs in train (nor its words: a train utterance that drew
the twin of a held-out sentence, the same words from another source, draws again).

Each utterance speaks the *normalised* transcript of a sentence from ``text_sources`` (so the
transcript is exact) with speed and pitch jitter (+-10 %), then: silence trimmed to 0.1-0.3 s per
side, speed perturbation by resampling (x0.9-1.1) to 16 kHz, random gain (-6..+3 dB around -6 dBFS
peak) and white noise at 20-45 dB SNR. Synthetic silences are exact zeros and synthetic levels are
constant: without this a model learns trivial cues.

Output (fairseq layout): ``wav/{split}/{speaker}/{utt}.wav`` (16-bit), ``{split}.tsv`` manifests
(root = the output directory), ``{split}.wrd`` / ``{split}.ltr`` transcripts, ``dict.ltr.txt``,
``speakers.json`` and ``corpus.json``. Utterance ``i`` depends only on ``(seed, i)`` and the corpus
is the shortest prefix of utterances reaching ``hours``: it is the same for any number of workers.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from data2vec.data.text_sources import english_sentences, normalize_transcript

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_FALLBACK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
FLITE_F0 = {"kal": 105, "kal16": 105, "awb": 110, "rms": 100, "slt": 170}  # about each voice's own mean F0
NUM_ESPEAK_SPEAKERS = 180
SPEAKERS_PER_FLITE_VOICE = 4
MAX_SECONDS = 15.0
INSTALL_HINT = "install them: apt-get install espeak-ng flite"


# ---- tools and speakers --------------------------------------------------------------------------

def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "flite") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found; {INSTALL_HINT}")


def engine_versions() -> dict:
    espeak = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    flite = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout
    return {"espeak-ng": espeak.split("Data at")[0].strip(),
            "flite": next((ln.strip() for ln in flite.splitlines() if "version" in ln), flite.strip())}


def espeak_variants() -> list[str]:
    """Variant names from espeak-ng's data directory (``voices/!v``); a fixed list if it is not found."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"Data at:\s*(\S+)", out)
    for root in ([Path(found.group(1))] if found else []) + [Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data")]:
        d = root / "voices" / "!v"
        if d.is_dir():
            return sorted(p.name for p in d.iterdir() if p.is_file() and re.fullmatch(r"[A-Za-z0-9_-]+", p.name))
    return list(ESPEAK_FALLBACK_VARIANTS)


def flite_voices() -> list[str]:
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    listed = out.split(":", 1)[-1].split()
    return [v for v in FLITE_F0 if v in listed]  # awb_time is a limited-domain (clock) voice: not used


def _probe(variant: str) -> str | None:
    """Hash of a short phrase in this variant: identical hashes are the same voice (e.g. klatt, klatt6)."""
    cmd = ["espeak-ng", "-v", f"en-us+{variant}", "-s", "160", "-p", "50", "--stdout", "one two three"]
    proc = subprocess.run(cmd, capture_output=True, timeout=30)
    return hashlib.sha1(proc.stdout).hexdigest() if proc.returncode == 0 and len(proc.stdout) > 1000 else None


def _hold_out(groups: list[list[str]], rng: np.random.Generator) -> dict[str, str]:
    """Assign whole groups of voices to splits (about 10 % of the groups each to test and valid)."""
    order = rng.permutation(len(groups))
    n_test = max(1, round(0.1 * len(groups))) if len(groups) >= 2 else 0
    n_valid = max(1, round(0.1 * len(groups))) if len(groups) >= 3 else 0
    split_of = {}
    for rank, g in enumerate(order):
        split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
        split_of.update({name: split for name in groups[g]})
    return split_of


def build_speakers(seed: int, variants: list[str], flite: list[str]) -> list[dict]:
    """Deterministic speakers with their split. ``variants``: espeak variant groups joined by ``=`` (one
    voice, held out together); ``flite``: flite voice names."""
    rng = np.random.default_rng([seed, 17])
    split_of = _hold_out([g.split("=") for g in variants], rng)
    speakers = []
    for split, frac in SPLIT_FRACTIONS.items():
        combos = [(v, var) for v in ESPEAK_VOICES for var in sorted(split_of) if split_of[var] == split]
        for k in rng.permutation(len(combos))[: round(NUM_ESPEAK_SPEAKERS * frac)]:
            voice, variant = combos[k]
            speed, pitch = int(rng.integers(130, 201)), int(rng.integers(20, 81))
            speakers.append({"id": f"espeak_{voice}_{variant}_s{speed}_p{pitch}", "engine": "espeak-ng", "voice": voice,
                             "variant": variant, "speed": speed, "pitch": pitch, "split": split})
    bases = sorted({v.rstrip("0123456789") for v in flite})  # kal and kal16 are one voice
    flite_split = _hold_out([[v for v in flite if v.rstrip("0123456789") == b] for b in bases], rng)
    for voice in flite:
        for _ in range(SPEAKERS_PER_FLITE_VOICE):
            stretch = round(float(rng.uniform(0.85, 1.2)), 2)
            f0 = int(FLITE_F0[voice] * rng.uniform(0.85, 1.2))
            speakers.append({"id": f"flite_{voice}_d{stretch:.2f}_f{f0}", "engine": "flite", "voice": voice,
                             "variant": "", "speed": stretch, "pitch": f0, "split": flite_split[voice]})
    by_id = {s["id"]: s for s in speakers}  # a repeated draw is one speaker
    return sorted(by_id.values(), key=lambda s: s["id"])


def voice_groups(workers: int) -> list[str]:
    """espeak variants that synthesise, grouped into one voice when they sound identical or are numbered
    versions of one voice ("caleb=klatt=klatt2=...", "iven=iven2=..."; m1..m8 stay separate)."""
    variants = espeak_variants()
    with ThreadPoolExecutor(workers) as pool:  # subprocesses: threads run them in parallel
        hashes = dict(zip(variants, pool.map(_probe, variants)))
    parent = {v: v for v in variants if hashes[v] is not None}
    if not parent:
        raise RuntimeError(f"espeak-ng produced no audio for any voice variant; {INSTALL_HINT}")

    def find(v: str) -> str:
        while parent[v] != v:
            v = parent[v]
        return v

    first_by_key: dict[str, str] = {}
    for v in parent:
        stem = v.rstrip("0123456789")
        for key in (hashes[v], "stem:" + stem if len(stem) > 2 else "name:" + v):
            if key in first_by_key:
                parent[find(v)] = find(first_by_key[key])
            else:
                first_by_key[key] = v
    groups: dict[str, list[str]] = {}
    for v in parent:
        groups.setdefault(find(v), []).append(v)
    return sorted("=".join(sorted(g)) for g in groups.values())


# ---- one utterance -------------------------------------------------------------------------------

def _synthesize(spk: dict, text: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Speak ``text`` with the speaker's voice, jittering its speed and pitch for this utterance."""
    jitter = rng.uniform(0.9, 1.1)
    if spk["engine"] == "espeak-ng":
        pitch = int(np.clip(spk["pitch"] + rng.integers(-8, 9), 0, 99))
        cmd = ["espeak-ng", "-v", f"{spk['voice']}+{spk['variant']}", "-s", str(round(spk["speed"] * jitter)),
               "-p", str(pitch), "--stdout", text]
        wav = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
        return sf.read(io.BytesIO(wav), dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        f0 = spk["pitch"] * rng.uniform(0.93, 1.07)
        cmd = ["flite", "-voice", spk["voice"], "--setf", f"duration_stretch={spk['speed'] / jitter:.3f}",
               "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", out]
        subprocess.run(cmd, capture_output=True, check=True, timeout=60)
        return sf.read(out, dtype="float32")


def augment(x: np.ndarray, rate: int, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """Trim silence, speed-perturb to ``sample_rate``, random gain, white noise; float32 in (-1, 1)."""
    import soxr

    x = x.mean(axis=1) if x.ndim > 1 else x
    peak = float(np.abs(x).max(initial=0.0))
    if peak < 1e-4:
        raise ValueError("silent synthesis")
    loud = np.flatnonzero(np.abs(x) > 0.01 * peak)
    x = x[loud[0]: loud[-1] + 1]
    factor = rng.uniform(0.9, 1.1)  # played back as if recorded at rate*factor: tempo and pitch change together
    x = soxr.resample(x.astype(np.float32), rate * factor, sample_rate)
    lead, tail = (int(rng.uniform(0.1, 0.3) * sample_rate) for _ in range(2))
    x = np.pad(x, (lead, tail)) / peak * 0.5 * 10 ** (rng.uniform(-6, 3) / 20)  # peak -12..-3 dBFS
    speech_rms = np.sqrt(np.mean(x[lead: x.size - tail] ** 2))
    noise = rng.standard_normal(x.size) * speech_rms * 10 ** (-rng.uniform(20, 45) / 20)
    return np.clip(x + noise, -0.999, 0.999).astype(np.float32)


_W: dict = {}  # per-worker state, set once by the pool initializer


def _init_worker(out_dir: str, seed: int, sample_rate: int, speakers: list[dict], sentences: dict) -> None:
    _W.update(out_dir=Path(out_dir), seed=seed, sample_rate=sample_rate, speakers=speakers, sentences=sentences,
              held_out=held_out_transcripts(sentences))


def held_out_transcripts(pools: dict[str, list[str]]) -> set[str]:
    """The spoken words of every valid and test sentence. The pools are disjoint as sentences, but two source
    sentences can speak the same words (a quotation in two books, punctuation aside): a train utterance never
    speaks these."""
    return {normalize_transcript(s) for split in ("valid", "test") for s in pools[split]}


def make_utterance(i: int) -> dict:
    """Synthesise utterance ``i`` (all randomness from ``(seed, i)``); returns its record or a skip reason."""
    rng = np.random.default_rng([_W["seed"], i])
    spk = _W["speakers"][int(rng.integers(len(_W["speakers"])))]
    pool = _W["sentences"][spk["split"]]
    words = normalize_transcript(pool[int(rng.integers(len(pool)))])
    while spk["split"] == "train" and words in _W["held_out"]:  # a held-out sentence's twin: draw again (a
        words = normalize_transcript(pool[int(rng.integers(len(pool)))])  # corpus without twins is unchanged)
    try:
        x, rate = _synthesize(spk, words.lower(), rng)
        x = augment(x, rate, rng, _W["sample_rate"])
    except (subprocess.SubprocessError, OSError, ValueError, RuntimeError) as e:
        return {"index": i, "skip": f"synthesis failed ({type(e).__name__})"}
    if x.size > MAX_SECONDS * _W["sample_rate"]:
        return {"index": i, "skip": f"longer than {MAX_SECONDS:g} s"}
    rel = f"wav/{spk['split']}/{spk['id']}/{i:07d}.wav"
    (_W["out_dir"] / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(_W["out_dir"] / rel, x, _W["sample_rate"], subtype="PCM_16")
    return {"index": i, "split": spk["split"], "speaker": spk["id"], "path": rel, "frames": int(x.size), "words": words}


# ---- the corpus ----------------------------------------------------------------------------------

def letters(words: str) -> str:
    """fairseq ``.ltr``: letters separated by spaces, ``|`` after every word ("HI YOU" -> "H I | Y O U |")."""
    return " ".join(" ".join(w) + " |" for w in words.split())


def speakable_sentences(seed: int) -> dict[str, list[str]]:
    """English sentences without acronyms or shouting (spoken letter by letter or not, unlike their
    transcript), split 80/10/10 into disjoint train/valid/test pools."""
    sents = [s for s in english_sentences(max_words=25) if not re.search(r"\b[A-Z]{2,}", s)]
    order = np.random.default_rng([seed, 23]).permutation(len(sents))
    n_test = n_valid = len(sents) // 10
    cuts = {"test": order[:n_test], "valid": order[n_test: n_test + n_valid], "train": order[n_test + n_valid:]}
    return {split: [sents[k] for k in sorted(idx)] for split, idx in cuts.items()}


def _generate(out: Path, target_frames: float, workers: int, init_args: tuple, hours: float) -> tuple[list, Counter]:
    """Make utterances 0, 1, 2, ... in rounds until their total length reaches the target."""
    from tqdm.auto import tqdm

    records, skipped, total, nxt = [], Counter(), 0, 0
    sample_rate = init_args[2]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool, \
            tqdm(total=round(hours, 4), unit="h", desc="synthesising speech", disable=None,
                 bar_format="{l_bar}{bar}| {n:.3f}/{total} h [{elapsed}<{remaining}]") as bar:
        while total < target_frames:
            mean = total / len(records) if records else 3.5 * sample_rate  # about 3.5 s per utterance
            n = min(max(math.ceil((target_frames - total) / mean * 1.1), 2 * workers), 200 * workers)
            for r in pool.imap(make_utterance, range(nxt, nxt + n), chunksize=max(1, n // (8 * workers))):
                if total >= target_frames:  # past the target: in index order, so independent of timing
                    if "path" in r:
                        (out / r["path"]).unlink()
                elif "skip" in r:
                    skipped[r["skip"]] += 1
                else:
                    records.append(r)
                    total += r["frames"]
                    bar.update(r["frames"] / sample_rate / 3600)
            nxt += n
            if not records and sum(skipped.values()) >= nxt:
                raise RuntimeError(f"every utterance failed ({dict(skipped)}); are espeak-ng and flite working? "
                                   f"{INSTALL_HINT}")
    for d in sorted((out / "wav").glob("*/*"), reverse=True):  # speaker folders emptied by the cut-off
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return records, skipped


def _write_outputs(out: Path, records: list[dict], speakers: list[dict], sample_rate: int) -> dict:
    per_split, letter_counts = {}, Counter()
    for split in SPLITS:
        rows = sorted((r for r in records if r["split"] == split), key=lambda r: r["index"])
        (out / f"{split}.tsv").write_text(f"{out}\n" + "".join(f"{r['path']}\t{r['frames']}\n" for r in rows))
        (out / f"{split}.wrd").write_text("".join(r["words"] + "\n" for r in rows))
        (out / f"{split}.ltr").write_text("".join(letters(r["words"]) + "\n" for r in rows))
        if split == "train":
            letter_counts.update(c for r in rows for c in letters(r["words"]).split())
        per_split[split] = {"hours": round(sum(r["frames"] for r in rows) / sample_rate / 3600, 4),
                            "utterances": len(rows), "speakers": len({r["speaker"] for r in rows})}
    ranked = sorted(letter_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    (out / "dict.ltr.txt").write_text("".join(f"{c} {n}\n" for c, n in ranked))
    (out / "speakers.json").write_text(json.dumps({s["id"]: {k: v for k, v in s.items() if k != "id"}
                                                   for s in speakers}, indent=1) + "\n")
    return per_split


def corpus_fingerprint(out: Path) -> dict:
    """SHA-256 per split of its audio (each manifest row, then that wav file's bytes, in manifest order) and of its
    transcripts (.ltr and .wrd): two builds of the same request can be compared without their files, and a
    difference says which split and whether the sound or the text differs (another espeak-ng or flite build
    changes the audio). The manifest's first line, the corpus's absolute path, is left out."""
    fp = {}
    for split in SPLITS:
        tsv = out / f"{split}.tsv"
        if not tsv.is_file():
            continue
        audio, text = hashlib.sha256(), hashlib.sha256()
        for row in tsv.read_text().splitlines()[1:]:
            audio.update(row.encode() + b"\n")
            audio.update((out / row.split("\t")[0]).read_bytes())
        for ext in ("ltr", "wrd"):
            text.update((out / f"{split}.{ext}").read_bytes())
        fp[split] = {"audio": audio.hexdigest(), "text": text.hexdigest()}
    return fp


def prepare_speech(out_dir: str | Path, hours: float, *, seed: int = 0, workers: int | None = None,
                   sample_rate: int = 16000) -> dict:
    """Synthesise about ``hours`` of speech into ``out_dir``; returns the corpus stats (also corpus.json)."""
    if not hours > 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    check_tools()
    out = Path(out_dir).resolve()
    request = {"requested_hours": hours, "seed": seed, "sample_rate": sample_rate}
    if (out / "corpus.json").exists():
        stats = json.loads((out / "corpus.json").read_text())
        if all(stats.get(k) == v for k, v in request.items()):
            if "fingerprint" not in stats:  # made before corpus.json recorded one: add it (the files are unchanged)
                try:
                    stats["fingerprint"] = corpus_fingerprint(out)
                except OSError as e:
                    raise ValueError(f"{out} is incomplete: {e.filename or e} cannot be read; delete {out} and "
                                     "make it again") from None
                tmp = out / "corpus.json.tmp"
                tmp.write_text(json.dumps(stats, indent=1) + "\n")
                tmp.replace(out / "corpus.json")
            print(f"{out} already holds this corpus ({stats['hours']:.2f} h, seed {seed}; train audio "
                  f"{stats['fingerprint']['train']['audio'][:12]}); nothing to do")
            return stats
        raise ValueError(f"{out} holds another corpus (hours={stats.get('requested_hours')}, "
                         f"seed={stats.get('seed')}); choose another --out or delete it")
    if (out / ".incomplete").exists():  # an earlier run was killed: start over
        shutil.rmtree(out / "wav", ignore_errors=True)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".incomplete").touch()
    t0 = time.time()
    workers = workers or os.cpu_count() or 1
    groups = voice_groups(workers)
    speakers = build_speakers(seed, groups, flite_voices())
    init_args = (str(out), seed, sample_rate, speakers, speakable_sentences(seed))
    records, skipped = _generate(out, hours * 3600 * sample_rate, workers, init_args, hours)
    per_split = _write_outputs(out, records, speakers, sample_rate)
    stats = {**request, "hours": round(sum(r["frames"] for r in records) / sample_rate / 3600, 4),
             "utterances": len(records), "speakers": len({r["speaker"] for r in records}),
             "speakers_defined": len(speakers), "splits": per_split, "skipped": dict(skipped),
             "espeak_variant_groups": groups, "engines": engine_versions(),
             "seconds_to_make": round(time.time() - t0, 1), "workers": workers,
             "fingerprint": corpus_fingerprint(out)}
    (out / "corpus.json").write_text(json.dumps(stats, indent=1) + "\n")  # written last: it means "complete"
    (out / ".incomplete").unlink()
    s = {k: v["hours"] for k, v in per_split.items()}
    print(f"made {stats['hours']:.2f} h of speech (train {s['train']:.2f} h, valid {s['valid']:.2f} h, "
          f"test {s['test']:.2f} h), {stats['utterances']} utterances, {stats['speakers']} speakers -> {out}")
    return stats


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory (created; must be empty or this same corpus)")
    parser.add_argument("--hours", type=float, default=1.0, help="hours of speech to make (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="same seed and hours give the same corpus")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def run(args) -> int:
    try:
        prepare_speech(args.out, args.hours, seed=args.seed, workers=args.workers)
    except RuntimeError as e:  # missing tools or text: the CLI reports ValueErrors as clean one-line errors
        raise ValueError(str(e)) from None
    return 0
