"""The built-in speech corpus: real English sentences spoken by espeak-ng and flite voices.

    data2vec prepare speech --out data/speech --hours 1

A *speaker* is a fixed voice configuration: engine, voice, variant, base speed and pitch (espeak-ng:
7 English voices x ~100 variants; flite: its 16 kHz-capable voices). Speakers are split into
train/valid/test, so test voices never occur in train. Each utterance speaks the *normalised*
transcript of a sentence from ``text_sources`` (so the transcript is exact), with per-utterance speed
and pitch jitter, speed perturbation by resampling, random gain, silence trimming and dither noise at a
random SNR (synthetic silences are exact zeros and would otherwise be a trivial cue).

Output (fairseq layout): ``wav/{split}/{speaker}/{utt}.wav`` (16 kHz, 16-bit), ``{split}.tsv``
manifests (root = the output directory), ``{split}.wrd`` / ``{split}.ltr`` transcripts, ``dict.ltr.txt``,
``speakers.json`` and ``corpus.json``. Utterance ``i`` depends only on ``(seed, i)``: the corpus is the
same for any number of worker processes.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from data2vec.data.text_sources import english_sentences, normalize_transcript

SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS_DIR = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
MAX_SECONDS = 15.0
CHUNK = 64  # utterances generated per round; the corpus stops at the first utterance past the target


def _tool_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "flite") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: install with `apt-get install espeak-ng flite`")


def build_speakers(seed: int, n_speakers: int = 240) -> list[dict]:
    """Deterministic speaker list with a split per speaker (whole voice configurations held out)."""
    rng = np.random.default_rng([seed, 17])
    variants = sorted(p.name for p in ESPEAK_VARIANTS_DIR.iterdir() if " " not in p.name) \
        if ESPEAK_VARIANTS_DIR.is_dir() else [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)]
    flite_listed = _tool_version(["flite", "-lv"])
    flite = [v for v in FLITE_VOICES if v in flite_listed.split()]
    configs = [("espeak", v, var) for v in ESPEAK_VOICES for var in variants] + [("flite", v, "") for v in flite]
    pick = rng.permutation(len(configs))[: min(n_speakers, len(configs))]
    # flite voices are few and distinct: keep them all, one per split where possible
    chosen = sorted({int(i) for i in pick} | {len(configs) - 1 - k for k in range(len(flite))})
    chosen = [configs[i] for i in chosen]
    order = rng.permutation(len(chosen))
    n_test = max(1, round(len(chosen) * SPLIT_FRACTIONS[2]))
    n_valid = max(1, round(len(chosen) * SPLIT_FRACTIONS[1]))
    speakers = []
    for rank, i in enumerate(order):
        engine, voice, variant = chosen[i]
        split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
        speakers.append({
            "id": f"{engine}-{voice}{'-' + variant if variant else ''}".replace("+", "").lower(),
            "engine": engine, "voice": voice, "variant": variant, "split": split,
            "speed": float(rng.uniform(0.85, 1.15)),  # relative to the engine's default rate
            "pitch": float(rng.uniform(0.0, 1.0)),  # 0..1, mapped to each engine's range
        })
    return sorted(speakers, key=lambda s: s["id"])


def _synthesize(spk: dict, text: str, speed: float, pitch: float) -> tuple[np.ndarray, int]:
    if spk["engine"] == "espeak":
        voice = spk["voice"] + (f"+{spk['variant']}" if spk["variant"] else "")
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(175 * speed)), "-p", str(int(15 + 70 * pitch)), "--stdout", text]
        wav = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
        return sf.read(io.BytesIO(wav), dtype="float32")
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        cmd = ["flite", "-voice", spk["voice"], "--setf", f"duration_stretch={1.0 / speed:.3f}",
               "--setf", f"int_f0_target_mean={int(85 + 90 * pitch)}", "-t", text, "-o", tmp.name]
        subprocess.run(cmd, capture_output=True, check=True, timeout=60)
        return sf.read(tmp.name, dtype="float32")


def _augment(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Speed perturbation, silence trim, gain and dither noise; returns 16 kHz float32 in [-1, 1]."""
    import soxr

    if x.ndim > 1:
        x = x.mean(axis=1)
    factor = rng.uniform(0.9, 1.1)  # read as if recorded at rate*factor: speed and pitch change together
    x = soxr.resample(x, rate * factor, SAMPLE_RATE).astype(np.float32)
    peak = np.abs(x).max(initial=0.0)
    if peak < 1e-4:
        raise ValueError("silent synthesis")
    loud = np.flatnonzero(np.abs(x) > 0.02 * peak)
    pad = [int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in range(2)]
    x = x[max(0, loud[0] - pad[0]): loud[-1] + pad[1]]
    x = x / peak * 0.5 * 10 ** (rng.uniform(-6, 3) / 20)
    rms = np.sqrt(np.mean(x**2))
    x = x + rng.standard_normal(x.size).astype(np.float32) * rms * 10 ** (-rng.uniform(20, 45) / 20)
    return np.clip(x, -0.999, 0.999).astype(np.float32)


# worker state (set once per process by the pool initializer)
_W: dict = {}


def _init_worker(out_dir: str, seed: int, speakers: list[dict], sentences: list[str]) -> None:
    by_split = {s: [sp for sp in speakers if sp["split"] == s] for s in SPLITS}
    _W.update(out_dir=Path(out_dir), seed=seed, by_split=by_split, sentences=sentences)


def _make_utterance(i: int) -> dict:
    """Synthesise utterance ``i`` (all randomness from ``(seed, i)``); returns its record or a skip reason."""
    rng = np.random.default_rng([_W["seed"], i])
    split = SPLITS[int(rng.choice(3, p=SPLIT_FRACTIONS))]
    spk = _W["by_split"][split][int(rng.integers(len(_W["by_split"][split])))]
    sentence = _W["sentences"][int(rng.integers(len(_W["sentences"])))]
    words = normalize_transcript(sentence)
    if not words:
        return {"index": i, "skip": "empty transcript"}
    speed = spk["speed"] * rng.uniform(0.9, 1.1)
    pitch = float(np.clip(spk["pitch"] + rng.uniform(-0.1, 0.1), 0, 1))
    try:
        x, rate = _synthesize(spk, words.lower(), speed, pitch)
        x = _augment(x, rate, rng)
    except (subprocess.SubprocessError, OSError, ValueError, RuntimeError) as e:
        return {"index": i, "skip": f"synthesis failed ({type(e).__name__})"}
    if x.size > MAX_SECONDS * SAMPLE_RATE:
        return {"index": i, "skip": f"longer than {MAX_SECONDS:g} s"}
    rel = f"wav/{split}/{spk['id']}/{i:07d}.wav"
    path = _W["out_dir"] / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    return {"index": i, "split": split, "speaker": spk["id"], "path": rel, "frames": int(x.size), "words": words}


def letters(words: str) -> str:
    """fairseq ``.ltr``: letters separated by spaces, ``|`` between words and at the end."""
    return " ".join(" ".join(w) + " |" for w in words.split())


def prepare_speech(out_dir: str | Path, hours: float, *, seed: int = 0, workers: int | None = None) -> dict:
    """Synthesise about ``hours`` of speech into ``out_dir``; returns the corpus stats (also corpus.json)."""
    if hours <= 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    check_tools()
    out = Path(out_dir).resolve()
    stats_path = out / "corpus.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if stats.get("requested_hours") == hours and stats.get("seed") == seed:
            print(f"{out} already holds this corpus ({stats['hours']:.2f} h); nothing to do")
            return stats
        raise ValueError(f"{out} holds another corpus (hours={stats.get('requested_hours')}, seed={stats.get('seed')}); "
                         "choose another --out or delete it")
    marker = out / ".incomplete"
    if marker.exists():  # an earlier run was killed: start over
        shutil.rmtree(out / "wav", ignore_errors=True)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()
    workers = workers or os.cpu_count() or 1
    speakers = build_speakers(seed)
    sentences = english_sentences()
    target = hours * 3600 * SAMPLE_RATE
    records, skipped, total, nxt = [], Counter(), 0, 0
    t0 = time.time()
    from tqdm.auto import tqdm

    bar = tqdm(total=round(hours, 3), unit="h", desc="prepare speech", disable=None, bar_format="{l_bar}{bar}| {n:.3f}/{total} h")
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(str(out), seed, speakers, sentences)) as pool:
        while total < target:
            chunk = pool.map(_make_utterance, range(nxt, nxt + CHUNK), chunksize=4)
            nxt += CHUNK
            for r in chunk:  # in index order: the cut-off does not depend on worker timing
                if total >= target:
                    if "path" in r:
                        (out / r["path"]).unlink()
                    continue
                if "skip" in r:
                    skipped[r["skip"]] += 1
                    continue
                records.append(r)
                total += r["frames"]
                bar.update(r["frames"] / SAMPLE_RATE / 3600)
    bar.close()

    per_split = {}
    ltr_counts = Counter()
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        (out / f"{split}.tsv").write_text(f"{out}\n" + "".join(f"{r['path']}\t{r['frames']}\n" for r in rows))
        (out / f"{split}.wrd").write_text("".join(r["words"] + "\n" for r in rows))
        (out / f"{split}.ltr").write_text("".join(letters(r["words"]) + "\n" for r in rows))
        if split == "train":
            for r in rows:
                ltr_counts.update(letters(r["words"]).split())
        per_split[split] = {"utterances": len(rows), "hours": round(sum(r["frames"] for r in rows) / SAMPLE_RATE / 3600, 4),
                            "speakers": len({r["speaker"] for r in rows})}
    (out / "dict.ltr.txt").write_text("".join(f"{c} {n}\n" for c, n in sorted(ltr_counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    (out / "speakers.json").write_text(json.dumps({s["id"]: s for s in speakers}, indent=1) + "\n")
    stats = {
        "requested_hours": hours, "hours": round(total / SAMPLE_RATE / 3600, 4), "seed": seed,
        "utterances": len(records), "speakers": len({r["speaker"] for r in records}), "splits": per_split,
        "skipped": dict(skipped), "sample_rate": SAMPLE_RATE, "seconds_to_make": round(time.time() - t0, 1),
        "engines": {"espeak-ng": _tool_version(["espeak-ng", "--version"]), "flite": _tool_version(["flite", "--version"])},
    }
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")  # written last: its presence means "complete"
    marker.unlink()
    s = per_split
    print(f"made {stats['hours']:.2f} h of speech (train {s['train']['hours']:.2f} h, valid {s['valid']['hours']:.2f} h, "
          f"test {s['test']['hours']:.2f} h), {len(records)} utterances, {stats['speakers']} speakers -> {out}")
    return stats


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory (created; must be empty or a finished corpus)")
    parser.add_argument("--hours", type=float, default=1.0, help="hours of speech to make (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def run(args) -> int:
    try:
        prepare_speech(args.out, args.hours, seed=args.seed, workers=args.workers)
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    return 0
