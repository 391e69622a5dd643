"""Bad data never kills a run (issue 14): damaged corpora of each modality, generated here, pretrain to the
end; every skipped file is named in the printed summary and in ``skipped.json``; ``kill -9`` + ``--resume``
over damaged images ends bit-identical to an uninterrupted run; errors that must stop a run (a manifest
line that is not UTF-8, a damaged token corpus) name the file and line; and a short Hypothesis fuzz of
the manifest, image and text readers finds only clean errors or clean skips."""

from __future__ import annotations

import json
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MICRO_OVERRIDES, cli_cmd, kill9_when_logged, run_cli, set_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data2vec.cli import main
from data2vec.data.skips import MAX_CONSECUTIVE_UNREADABLE, CollateWithSkips, SkipLog, UnreadableSample, substitute
from data2vec.data.text import load_corpus, read_text_file
from data2vec.errors import Data2VecError
from data2vec.modalities.audio.dataset import AudioDataset, read_manifest, validate_manifest
from data2vec.modalities.image.dataset import ImageFolder, load_image, validate_images
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.distributed import DistInfo

ONE_PROCESS = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
IMAGE_MICRO = ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "data.batch_size=8",
               "model.targets.average_top_k_layers=2", "data.num_workers=0", "train.threads=1", "train.log_interval=1"]
TEXT_MICRO = ["encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
              "encoder.num_heads=2", "model.targets.average_top_k_layers=2", "data.max_tokens=512",
              "data.num_workers=0", "train.threads=1", "train.log_interval=1"]


# ---- damaged files ----------------------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width`` x ``height`` RGB, with a tiny IDAT: a cheap bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _png(path: Path, seed: int) -> bytes:
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
    return path.read_bytes()


def image_corpus(root: Path, n_good: int = 36) -> dict[str, str]:
    """root/train/<a|b>/*.png: ``n_good`` good images plus one each of zero-byte, non-image bytes, a header
    declaring 20000 x 20000 pixels, a header cut short (these four fail the check before training) and
    one truncated in its pixel data (fails only when decoded). Returns {bad file name: expected reason}."""
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
    for i in range(n_good):
        _png(root / "train" / "ab"[i % 2] / f"ok{i:02d}.png", i)
    whole = _png(root / "train/a/trunc_data.png", 99)
    (root / "train/a/trunc_data.png").write_bytes(whole[: len(whole) * 2 // 3])
    (root / "train/b/trunc_header.png").write_bytes(whole[:20])
    (root / "train/a/empty.png").write_bytes(b"")
    (root / "train/b/notimage.png").write_bytes(b"this is a text file with a .png name\n" * 20)
    (root / "train/b/huge.png").write_bytes(png_header(20000, 20000))
    return {"empty.png": "empty", "notimage.png": "unreadable", "huge.png": "too large",
            "trunc_header.png": "unreadable", "trunc_data.png": "unreadable"}


def _tone(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def audio_corpus(root: Path, n_good: int = 18) -> dict[str, str]:
    """root/train.tsv over 1 s clips: ``n_good`` good ones, a zero-byte file, non-audio bytes and a header cut
    short (dropped before training), a float WAV with a NaN and one with an Inf (skipped when read)."""
    (root / "wav").mkdir(parents=True)
    rows = []
    for i in range(n_good):
        sf.write(root / f"wav/ok{i:02d}.wav", _tone(16000, i), 16000)
        rows.append(f"wav/ok{i:02d}.wav\t16000")
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = _tone(16000, 50)
        x[1234] = value
        sf.write(root / "wav" / name, x, 16000, subtype="FLOAT")
    (root / "wav/empty.wav").write_bytes(b"")
    (root / "wav/notaudio.wav").write_bytes(b"\x89PNG not audio at all" * 50)
    (root / "wav/trunc_header.wav").write_bytes((root / "wav/ok00.wav").read_bytes()[:30])
    rows += [f"wav/{n}\t16000" for n in ("nan.wav", "inf.wav", "empty.wav", "notaudio.wav", "trunc_header.wav")]
    (root / "train.tsv").write_text(f"{root}\n" + "\n".join(rows) + "\n")
    return {"nan.wav": "non-finite", "inf.wav": "non-finite", "empty.wav": "unreadable",
            "notaudio.wav": "unreadable", "trunc_header.wav": "unreadable"}


WORDS = ("the cat dog runs jumps over a lazy quick brown fox and then sleeps under warm sun in green field "
         "while birds sing songs of morning light").split()


def text_inputs(root: Path, n_good: int = 19) -> dict[str, str]:
    """Text files for ``prepare text``: ``n_good`` good ones, random binary bytes, a latin-1 line in a UTF-8
    file (that line is dropped), and an empty file."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_good):
        docs = ["\n".join(" ".join(rng.choice(WORDS, rng.integers(5, 14))).capitalize() + "."
                          for _ in range(rng.integers(2, 6))) for _ in range(4)]
        (root / f"doc{i:02d}.txt").write_text("\n\n".join(docs) + "\n")
    (root / "binary.txt").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (root / "latin1.txt").write_bytes("The cat sleeps.\nLe caf\u00e9 est chaud.\nThe dog runs.\n".encode("utf-8")
                                      + "Un caf\u00e9 cr\u00e8me.\n".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    return {"binary.txt": "binary", "latin1.txt": "not UTF-8", "empty.txt": "empty"}


def _skipped(run: Path) -> dict:
    return json.loads((run / "skipped.json").read_text())


def _names(files: list[dict]) -> dict[str, str]:
    return {Path(f["file"]).name: f["reason"] for f in files}


# ---- end to end: each modality's damaged corpus pretrains to the end ----------------------------------------
def test_damaged_image_corpus_kill_resume_is_bit_identical_and_names_every_file(tmp_path):
    bad = image_corpus(tmp_path / "img")
    # 37 usable images -> 5 batches of 8 per epoch: 10 updates = 2 epochs; the loader runs in a worker
    over = IMAGE_MICRO + ["train.max_update=10", "train.save_interval_updates=3", "data.num_workers=1"]
    args = ["pretrain", "--preset", "image-tiny-v1", "--data", str(tmp_path / "img"), *set_args(over)]
    done = run_cli(*args, "--out", str(tmp_path / "a"))
    killed = kill9_when_logged(cli_cmd(*args, "--out", str(tmp_path / "b")), tmp_path / "b", 7)
    assert killed.returncode == -9, killed.stderr
    run_cli("pretrain", "--out", str(tmp_path / "b"), "--resume")

    a, b = load_checkpoint(tmp_path / "a/checkpoint_last.pt"), load_checkpoint(tmp_path / "b/checkpoint_last.pt")
    assert a["step"] == b["step"] == 10
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    losses = [[json.loads(r)["loss"] for r in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (tmp_path / "a", tmp_path / "b")]
    assert losses[0] == losses[1] and len(losses[0]) == 10

    skipped = _skipped(tmp_path / "a")
    assert skipped == _skipped(tmp_path / "b")  # the resumed run counted nothing twice and lost nothing
    before, during = _names(skipped["before_training"]["files"]), skipped["during_training"]["files"]
    assert {n: r.split(":")[0] for n, r in before.items()} == {n: k for n, k in bad.items() if n != "trunc_data.png"}
    assert "400,000,000 pixels" in before["huge.png"] and "data.max_image_pixels" in before["huge.png"]
    assert [(Path(f["file"]).name, f["count"], f["epochs"]) for f in during] == [("trunc_data.png", 2, [1, 2])]
    assert "truncated" in during[0]["reason"]
    assert skipped["total_files"] == 5
    for name in bad:  # printed by name at the end
        assert name in done.stdout
    assert "== skipped data: 5 file(s)" in done.stdout
    assert json.loads((tmp_path / "a/summary.json").read_text())["skipped_files"] == 5


def test_damaged_audio_corpus_pretrains_and_skips_nan_clips(tmp_path, capsys):
    bad = audio_corpus(tmp_path / "speech")
    run = tmp_path / "run"
    # 20 usable clips of 1 s, 2 per batch: 10 updates read the first epoch
    over = MICRO_OVERRIDES + ["train.max_update=10", "train.save_interval_updates=100"]
    assert main(["pretrain", "--preset", "audio-tiny-v1", "--data", str(tmp_path / "speech"), "--out", str(run),
                 *set_args(over)]) == 0
    out = capsys.readouterr().out
    recs = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 10 and all(np.isfinite(r["loss"]) for r in recs)
    skipped = _skipped(run)
    before = _names(skipped["before_training"]["files"])
    during = {Path(f["file"]).name: f for f in skipped["during_training"]["files"]}
    assert set(before) == {n for n, k in bad.items() if k == "unreadable"}
    assert set(during) == {"nan.wav", "inf.wav"} and all(f["epochs"] == [1] for f in during.values())
    assert "1 NaN/Inf sample(s)" in during["nan.wav"]["reason"]
    for name in bad:
        assert name in out


def test_damaged_text_inputs_prepare_and_pretrain(tmp_path, capsys):
    from data2vec.data.prepare_text import prepare_text

    bad = text_inputs(tmp_path / "in")
    info = prepare_text(tmp_path / "text", inputs=sorted(str(p) for p in (tmp_path / "in").iterdir()), vocab_size=400)
    assert {Path(f).name: r.split(":")[0] for f, r in info["skipped"]} == bad
    latin1 = dict((Path(f).name, r) for f, r in info["skipped"])["latin1.txt"]
    assert "1 line(s) skipped (line 4)" in latin1 and "iconv" in latin1
    kept = (tmp_path / "text/train.txt").read_text() + (tmp_path / "text/valid.txt").read_text()
    assert "Le caf\u00e9 est chaud." in kept and "Un caf" not in kept
    run = tmp_path / "run"
    assert main(["pretrain", "--preset", "text-tiny-v1", "--data", str(tmp_path / "text"), "--out", str(run),
                 *set_args(TEXT_MICRO + ["train.max_update=2"])]) == 0
    out = capsys.readouterr().out
    assert {n: r.split(":")[0] for n, r in _names(_skipped(run)["before_training"]["files"]).items()} == bad
    assert "binary.txt" in out and "3 input file(s) skipped" in out


# ---- errors that stop a run before it starts name the file and line ----------------------------------------
def test_manifest_line_not_utf8_names_file_and_line(tmp_path, capsys):
    audio_corpus(tmp_path)
    lines = (tmp_path / "train.tsv").read_bytes().splitlines()
    lines[3] = "wav/caf\u00e9.wav\t16000".encode("latin-1")
    (tmp_path / "train.tsv").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(Data2VecError, match=r"train\.tsv:4: not UTF-8 text \(byte 0xe9 at column 8\)"):
        read_manifest(tmp_path / "train.tsv")
    assert main(["pretrain", "--preset", "audio-tiny-v1", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                 *set_args(MICRO_OVERRIDES)]) == 2
    err = capsys.readouterr().err
    assert "train.tsv:4" in err and "iconv" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bin.tsv").write_bytes(b"/root\nwav/a.wav\t16\x00\n")
    with pytest.raises(Data2VecError, match=r"bin\.tsv:2: NUL byte"):
        read_manifest(tmp_path / "bin.tsv")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "out_of_vocab", "bad_ends"])
def test_damaged_token_corpus_is_named_with_the_fix(tmp_path, damage):
    path = tmp_path / "train.npz"
    np.savez(path, tokens=np.array([0, 5, 6, 2, 7, 2], np.int32), sent_ends=np.array([4, 6]),
             doc_ends=np.array([6]))
    assert len(load_corpus(path, vocab_size=10)["tokens"]) == 6
    whole = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif damage == "bad_ends":
        np.savez(path, tokens=np.zeros(6, np.int32), sent_ends=np.array([4, 3]), doc_ends=np.array([3]))
    with pytest.raises(Data2VecError, match=r"train\.npz.*data2vec prepare text"):
        load_corpus(path, vocab_size=7)


# ---- the pieces ------------------------------------------------------------------------------------------
def test_image_validation_and_pixel_limit(tmp_path):
    bad = image_corpus(tmp_path, n_good=4)
    files = sorted((p, 0) for p in (tmp_path / "train").rglob("*.png"))
    keep, report = validate_images(files, name="train")
    assert len(keep) == 5 and report.total == 9 and report.counts == {"unreadable": 2, "empty": 1, "too large": 1}
    assert "huge.png" in report.summary() and "data.max_image_pixels" in dict(
        (Path(p).name, r) for p, r in report.skipped())["huge.png"]
    with pytest.raises(UnreadableSample, match=r"huge\.png: too large: 400,000,000 pixels > the limit"):
        load_image(tmp_path / "train/b/huge.png", 1)
    with pytest.raises(UnreadableSample, match=r"too large: 784 pixels > the limit of 700"):
        load_image(tmp_path / "train/a/ok00.png", 1, max_pixels=700)
    assert load_image(tmp_path / "train/a/ok00.png", 3, max_pixels=784).shape == (28, 28, 3)
    with pytest.raises(UnreadableSample, match=r"trunc_data\.png: unreadable: OSError: image file is truncated"):
        load_image(tmp_path / "train/a/trunc_data.png", 1)
    with pytest.raises(Data2VecError, match="no usable image"):
        validate_images([(tmp_path / "train/a/empty.png", 0)])
    assert bad["huge.png"] == "too large"


def test_training_image_folder_substitutes_the_next_image_deterministically(tmp_path):
    from data2vec.modalities.image.dataset import AugmentConfig

    image_corpus(tmp_path, n_good=4)
    aug = AugmentConfig(image_size=28, mean=(0.5,), std=(0.5,))
    strict = ImageFolder(tmp_path / "train", channels=1, augment_cfg=aug, seed=0)
    i = [f.name for f, _ in strict.files].index("trunc_data.png")
    with pytest.raises(UnreadableSample, match="trunc_data.png"):
        strict[i]
    ds = ImageFolder(tmp_path / "train", channels=1, augment_cfg=aug, seed=0, skip_unreadable=True)
    s = ds[i]
    assert s["id"] == i and s["label"] == ds.files[(i + 1) % len(ds)][1]
    assert [Path(p).name for p, _ in s["skipped"]] == ["trunc_data.png"]
    assert torch.equal(s["image"], ds[i]["image"])  # the same substitute, crop and flip every time
    assert ds[(i + 1) % len(ds)]["skipped"] == []
    batch = CollateWithSkips(lambda samples: {"n": len(samples)})([s, ds[0]])
    assert batch["n"] == 2 and [Path(p).name for p, _ in batch["skipped"]] == ["trunc_data.png"]


def test_audio_dataset_skips_nan_clips_and_keeps_the_batch_cost(tmp_path):
    audio_corpus(tmp_path, n_good=3)
    m, report = validate_manifest(read_manifest(tmp_path / "train.tsv"), sample_rate=16000, min_samples=4000)
    assert {Path(p).name for p, _ in report.skipped()} == {"empty.wav", "notaudio.wav", "trunc_header.wav"}
    m.sizes[m.paths.index("wav/nan.wav")] = 9000  # as if the manifest declared it shorter
    kw = dict(sample_rate=16000, max_sample_size=16000, min_sample_size=4000, normalize=True, seed=0)
    i = m.paths.index("wav/nan.wav")
    with pytest.raises(UnreadableSample, match=r"nan\.wav: non-finite: 1 NaN/Inf"):
        AudioDataset(m, **kw)[i]
    ds = AudioDataset(m, **kw, skip_unreadable=True)
    s = ds[i]  # nan.wav and inf.wav (next) are both passed over
    assert [Path(p).name for p, _ in s["skipped"]] == ["nan.wav", "inf.wav"]
    assert s["id"] == i and s["source"].shape == (9000,) and torch.isfinite(s["source"]).all()


def test_substitute_gives_up_on_a_run_of_unreadable_entries():
    def load(j, slot):
        raise UnreadableSample(f"f{j}", "unreadable: gone")

    with pytest.raises(Data2VecError, match=rf"{MAX_CONSECUTIVE_UNREADABLE} entries in a row .* f3 "):
        substitute(load, 3, 1000)


def test_skip_log_counts_each_file_once_per_epoch_and_survives_a_resume(tmp_path):
    class Report:
        @staticmethod
        def skipped():
            return [("x/empty.png", "empty (0 bytes)")]

    log = SkipLog(tmp_path, Report(), ONE_PROCESS, resume=False)
    for epoch in (1, 1, 2):
        batch = {"skipped": [["x/t.png", "unreadable: truncated"]]}
        log.take(batch, epoch)
        assert "skipped" not in batch
    log.save()
    again = SkipLog(tmp_path, Report(), ONE_PROCESS, resume=True)
    again.take({"skipped": [["x/t.png", "unreadable: truncated"], ["x/u.png", "unreadable: x"]]}, 2)
    assert again.finish() == 3
    state = _skipped(tmp_path)
    assert [(f["file"], f["count"]) for f in state["during_training"]["files"]] == [("x/t.png", 2), ("x/u.png", 1)]
    assert state["during_training"]["times"] == 3 and state["before_training"]["count"] == 1
    assert SkipLog(tmp_path / "fresh", None, ONE_PROCESS, resume=False).finish() == 0


def test_text_reader_reports_binary_empty_and_non_utf8_lines(tmp_path):
    text_inputs(tmp_path / "t", n_good=1)
    lines, problems = read_text_file(tmp_path / "t/binary.txt")
    assert lines == [] and "binary" in problems[0][1] and "UTF-8" in problems[0][1]
    lines, problems = read_text_file(tmp_path / "t/latin1.txt")
    assert lines == ["The cat sleeps.", "Le caf\u00e9 est chaud.", "The dog runs."]
    assert problems[0][0].endswith("latin1.txt") and "line 4" in problems[0][1]
    (tmp_path / "u16.txt").write_text("hello world\n", encoding="utf-16")
    assert "UTF-16" in read_text_file(tmp_path / "u16.txt")[1][0][1]
    assert read_text_file(tmp_path / "t/doc00.txt")[1] == []


# ---- fuzz: only clean errors or clean skips ------------------------------------------------------------------
_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                 database=None)
_TMP = tempfile.TemporaryDirectory()  # hypothesis reruns a test body many times: one folder for all of them
_VALID_PNG = _png(Path(_TMP.name) / "valid.png", 0)


def _fuzz_file(name: str, data: bytes) -> Path:
    path = Path(_TMP.name) / name
    path.write_bytes(data)
    return path


_MANIFEST_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.binary(max_size=30), st.text(max_size=30).map(str.encode),
                       st.tuples(st.text(max_size=12), st.text("0123456789x-\u0663 ", max_size=6))
                       .map(lambda t: f"{t[0]}\t{t[1]}".encode("utf-8", "surrogatepass"))),
             max_size=8).map(lambda lines: b"\n".join([b"/root", *lines])))


@_FUZZ
@given(_MANIFEST_BYTES)
def test_fuzz_manifest_reader(data):
    try:
        m = read_manifest(_fuzz_file("m.tsv", data))
    except Data2VecError as e:
        assert "m.tsv" in str(e)
        return
    assert len(m.paths) == len(m.sizes) and all(n >= 0 for n in m.sizes)


@_FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.tuples(st.integers(0, 1500), st.binary(min_size=1, max_size=8))
                 .map(lambda t: _VALID_PNG[: t[0]] + t[1] + _VALID_PNG[t[0] + len(t[1]):]),
                 st.tuples(st.integers(0, 70000), st.integers(0, 70000)).map(lambda wh: png_header(*wh))))
def test_fuzz_image_reader(data):
    path = _fuzz_file("f.png", data)
    try:
        img = load_image(path, 3)
    except UnreadableSample as e:
        assert e.path == str(path) and e.reason.split(":")[0] in ("empty", "unreadable", "too large")
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@_FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.lists(st.one_of(st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
                                    st.binary(max_size=10)), max_size=10).map(b"\n".join)))
def test_fuzz_text_reader(data):
    lines, problems = read_text_file(_fuzz_file("t.txt", data))
    assert all(isinstance(line, str) for line in lines)
    assert all(Path(f).name == "t.txt" and r.split(":")[0] in ("empty", "binary", "not UTF-8") for f, r in problems)
    if not problems:
        assert lines == data.decode("utf-8").splitlines()


def test_image_finetuning_names_the_images_it_leaves_out(tmp_path):
    """Fine-tuning checks every header too; the run's opening line names what it left out (train and eval)."""
    from types import SimpleNamespace

    from PIL import Image

    from data2vec.modalities.image.finetune import ImageFinetuneConfig, ImageFinetuneData

    for split in ("train", "valid", "test"):
        for c in ("a", "b"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("L", (28, 28), color=40 * i).save(d / f"{i}.png")
    (tmp_path / "train" / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "test" / "b" / "junk.png").write_bytes(b"not an image")
    from data2vec.modalities.image import ImageEncoderConfig

    cfg = ImageFinetuneConfig(encoder=ImageEncoderConfig(image_size=28, patch_size=4, in_chans=1))
    cfg.data.path = str(tmp_path)
    cfg.data.label_fraction = 1.0
    data = ImageFinetuneData(cfg, SimpleNamespace(world_size=1, rank=0), seed=1)
    text = data.describe()
    assert "train: left out 1 unusable image(s)" in text and "empty.png" in text
    assert "test: left out 1 unusable image(s)" in text and "junk.png" in text
    assert len(data.train) == 6
    # an image whose header is fine but whose data is cut off fails only when decoded: it is replaced
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8))
    noise.save(tmp_path / "train" / "b" / "2.png")
    good = (tmp_path / "train" / "b" / "2.png").read_bytes()
    (tmp_path / "train" / "b" / "2.png").write_bytes(good[: len(good) // 2])
    data = ImageFinetuneData(cfg, SimpleNamespace(world_size=1, rank=0), seed=1)
    batches = list(data.make_loader(epoch=1))
    assert sum(b["source"].size(0) for b in batches) == 6
    assert [p for b in batches for p, _ in b["skipped"]] == [str(tmp_path / "train" / "b" / "2.png")]
