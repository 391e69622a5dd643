"""Every failure is one clear line, and nothing is lost (issue 14, part 4).

Each case runs the real CLI (``cli.main`` in this process, or ``python -m data2vec.cli`` where the process
itself matters) and checks: exit code 2, a single line on stderr that says what to fix, no traceback, and that
the run's previous checkpoint still loads. Bugs (exceptions that are not user errors) keep their traceback.
"""

from __future__ import annotations

import errno
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MICRO_OVERRIDES, ROOT, set_args
from data2vec import cli
from data2vec.train.checkpoint import load_checkpoint, save_checkpoint


def _pretrain_args(data, out, overrides=()) -> list[str]:
    return ["pretrain", "--preset", "audio-tiny-v1", "--data", str(data), "--out", str(out),
            *set_args(MICRO_OVERRIDES + list(overrides))]


def _one_line_error(capsys, argv: list[str], *expect: str) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for e in expect:
        assert e in err, err
    return err


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def base_run(speech_corpus, tmp_path_factory) -> Path:
    """A finished 2-update micro run (checkpoint at update 2), copied by each test that changes it."""
    run = tmp_path_factory.mktemp("failures") / "run"
    assert cli.main(_pretrain_args(speech_corpus, run, ["train.max_update=2"])) == 0
    return run


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base_run, dst)
    return dst


def _resume(run: Path, *overrides: str) -> list[str]:
    return ["pretrain", "--out", str(run), "--resume", *set_args(list(overrides))]


# ---- writing: disk full, read-only, in the way ----------------------------------------------------------------
def test_disk_full_while_saving_keeps_the_previous_checkpoint(run, monkeypatch, capsys):
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"partial bytes")  # a write that gets part-way, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    _one_line_error(capsys, _resume(run, "train.max_update=4", "train.save_interval_updates=1"),
                    "checkpoint_last.pt", "No space left on device", "free some space", "previous checkpoint_last.pt "
                    "is intact")
    assert not list(run.glob("*.tmp"))  # the partial temp file is gone
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 2
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run continues where its checkpoint is
    assert cli.main(_resume(run, "train.max_update=4")) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 4 and _steps(run) == [1, 2, 3, 4]


def test_out_on_a_read_only_file_system(speech_corpus, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"

    def mkdir(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    _one_line_error(capsys, _pretrain_args(speech_corpus, ro / "run"), "Read-only file system", "writable")


def test_out_below_a_file(speech_corpus, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line_error(capsys, _pretrain_args(speech_corpus, tmp_path / "f" / "run"), "is a file, not a directory")
    _one_line_error(capsys, ["finetune", "image-classification", "--preset", "image-tiny-v1", "--data",
                             str(tmp_path), "--out", str(tmp_path / "f" / "ft")], "is a file, not a directory")


@pytest.mark.parametrize("what", [["speech", "--hours", "0.01"], ["text"], ["images"], ["rt-polarity"]])
def test_prepare_with_an_unwritable_out(what, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line_error(capsys, ["prepare", *what, "--out", str(tmp_path / "f" / "data")], "is a file")
    _one_line_error(capsys, ["prepare", *what, "--out", "/sys/data2vec-test-out"], "cannot create --out")
    _one_line_error(capsys, ["prepare", "lm", "--text", str(tmp_path / "f"), "--out", str(tmp_path / "f" / "lm.arpa")],
                    "is a file")


# ---- reading: damaged model files, configs, checkpoints, logs ---------------------------------------------------
@pytest.fixture(scope="module")
def converted(base_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "model"
    assert cli.main(["convert", str(base_run / "checkpoint_last.pt"), "--out", str(out)]) == 0
    return out


def test_malformed_model_safetensors(converted, tmp_path, capsys):
    bad = tmp_path / "model"
    shutil.copytree(converted, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:100])
    _one_line_error(capsys, ["convert", str(bad), "--out", str(tmp_path / "c")], "safetensors")
    (bad / "model.safetensors").write_bytes(b"\xff" * 64)
    _one_line_error(capsys, ["convert", str(bad), "--out", str(tmp_path / "c")], "safetensors")


@pytest.mark.parametrize("edit, expect", [
    (lambda c: c.pop("modality"), ("not a data2vec HF model", "no 'modality'")),  # a model dir without it reads as HF
    (lambda c: c["encoder"].update(depth="two"), ("encoder.depth: expected an integer",) * 2),
    (lambda c: c["encoder"].update(embed_dim=-32), ("encoder.embed_dim must be >= 1",) * 2),
    (lambda c: c.update(encoder=[1, 2]), ("encoder: expected a mapping",) * 2),
    (lambda c: c["encoder"].update(embed_dim=10**9), ("for the student and teacher weights alone",) * 2),
])
def test_bad_config_json(edit, expect, converted, run, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    convert = ["convert", str(model), "--out", str(tmp_path / "c")]
    for cfg_file, argv, exp in ((model / "config.json", convert, expect[0]),
                                (run / "config.json", _resume(run), expect[1])):
        cfg = json.loads(cfg_file.read_text())
        edit(cfg)
        cfg_file.write_text(json.dumps(cfg))
        _one_line_error(capsys, argv, exp)
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 2


def test_config_json_that_is_not_json(run, converted, tmp_path, capsys):
    (run / "config.json").write_text('{"modality": "audio", ')
    _one_line_error(capsys, _resume(run), "config.json is not valid JSON")
    model = tmp_path / "model"
    shutil.copytree(converted, model)
    (model / "config.json").write_text('{"modality": ')
    _one_line_error(capsys, ["convert", str(model), "--out", str(tmp_path / "c")], "config.json is not valid JSON")


def test_checkpoint_without_model(run, tmp_path, capsys):
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    save_checkpoint(run / "checkpoint_last.pt", {k: v for k, v in ckpt.items() if k not in ("model", "format_version")})
    _one_line_error(capsys, _resume(run), "has no 'model' entry")
    _one_line_error(capsys, ["convert", str(run / "checkpoint_last.pt"), "--out", str(tmp_path / "c")], "'model'")


def test_resume_with_weights_that_do_not_match_the_config(run, capsys):
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    key = next(k for k in ckpt["model"] if k.endswith("self_attn.k_proj.weight"))
    ckpt["model"][key] = torch.zeros(3, 3)
    del ckpt["model"][next(k for k in ckpt["model"] if k.endswith("v_proj.bias"))]
    save_checkpoint(run / "checkpoint_last.pt", {k: v for k, v in ckpt.items() if k != "format_version"})
    err = _one_line_error(capsys, _resume(run), "do not match", "(3, 3) vs (32, 32)", "1 tensor(s) missing")
    assert len(err) < 600, err  # not the 199 lines of load_state_dict


def test_torn_last_metrics_line_is_dropped_on_resume(run, capsys):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 1.2')  # killed mid-append
    assert cli.main(_resume(run, "train.max_update=3")) == 0
    assert "dropped its torn last line" in capsys.readouterr().out
    assert _steps(run) == [1, 2, 3]


# ---- absurd sizes: refused before anything is allocated (a subprocess with capped memory, in case) ---------------
@pytest.mark.parametrize("override", ["encoder.embed_dim=1000000000", "encoder.depth=1000000",
                                      "encoder.conv_feature_layers=[(16, 3, 2)] * 1000000000"])
def test_absurd_sizes_are_refused_before_allocating(override, speech_corpus, tmp_path):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    proc = subprocess.run([sys.executable, "-m", "data2vec.cli", *_pretrain_args(speech_corpus, tmp_path / "r"),
                           "--set", override, "--set", "encoder.conv_pos_groups=1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=cap)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ("iB for the student and teacher weights" in err) or ("conv layers; at most" in err), err


def test_absurd_hf_config_is_refused_before_allocating(tmp_path, capsys):
    from transformers import Data2VecTextConfig

    hf = tmp_path / "hf"
    hf.mkdir()
    Data2VecTextConfig(vocab_size=60, hidden_size=10**9, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=40,
                       type_vocab_size=1).to_json_file(hf / "config.json")
    torch.save({}, hf / "pytorch_model.bin")
    _one_line_error(capsys, ["convert", str(hf), "--out", str(tmp_path / "c")], "for the student and teacher weights")


# ---- settings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, expect", [
    ("train.save_interval_updates=0", "train.save_interval_updates must be >= 1"),
    ("train.log_interval=0", "train.log_interval must be >= 1"),
    ("train.max_update=0", "train.max_update must be >= 1"),
    ("train.max_update=-5", "train.max_update must be >= 0"),
])
def test_bad_intervals(override, expect, run, capsys):
    _one_line_error(capsys, _resume(run, override), expect)
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 2 and _steps(run) == [1, 2]


def test_max_update_zero_on_a_new_run_writes_nothing(speech_corpus, tmp_path, capsys):
    _one_line_error(capsys, _pretrain_args(speech_corpus, tmp_path / "r", ["train.max_update=0"]),
                    "train.max_update must be >= 1")
    assert not (tmp_path / "r" / "checkpoint_last.pt").exists()


def test_finetune_negative_eval_interval(tmp_path, capsys):
    _one_line_error(capsys, ["finetune", "image-classification", "--preset", "image-tiny-v1", "--out",
                             str(tmp_path / "ft"), "--set", "eval_interval=-1", "--dry-run"],
                    "eval_interval must be >= 1")


@pytest.mark.parametrize("text, suffix, expect", [('{"a": [\n', ".yaml", "not valid YAML"),
                                                  ("optim:\n  lr: [1\n", ".yaml", "line 3"),
                                                  ('{"optim": }', ".json", "not valid JSON"),
                                                  ("- 1\n- 2\n", ".yaml", "must hold a mapping")])
def test_malformed_config_file(text, suffix, expect, tmp_path, capsys):
    f = tmp_path / f"o{suffix}"
    f.write_text(text)
    _one_line_error(capsys, ["pretrain", "--preset", "audio-tiny-v1", "--out", str(tmp_path / "r"), "--config", str(f),
                             "--dry-run"], expect, str(f))


def test_presets_into_a_closed_pipe_is_quiet():
    proc = subprocess.Popen([sys.executable, "-m", "data2vec.cli", "presets", "--show", "audio-base-v1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # like `| head` exiting before data2vec writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == cli.EXIT_BROKEN_PIPE and err == "", err


def test_bugs_keep_their_traceback(monkeypatch):
    """Only user errors become one line: an exception from a library (a bug in our call) is not swallowed."""
    def bug(args):
        return len(args.no_such_thing)  # AttributeError: a bug

    def library_value_error(args):
        import numpy as np

        return np.zeros(3).reshape(2)  # ValueError raised inside numpy: also a bug, not the user's input

    for func in (bug, library_value_error):
        monkeypatch.setattr(cli, "cmd_presets", func)
        with pytest.raises((AttributeError, ValueError)):
            cli.main(["presets"])


def test_errors_from_dataloader_workers_are_judged_where_they_were_raised():
    """torch re-raises a worker's exception with the worker's traceback as its text: ours is one line, a library's
    stays a bug."""
    def worker_error(origin: str) -> ValueError:
        return ValueError(f"Caught ValueError in DataLoader worker process 0.\n"
                          f"Original Traceback (most recent call last):\n"
                          f'  File "/venv/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n'
                          f"    data = fetcher.fetch(index)\n"
                          f'  File "{origin}", line 5, in read\n'
                          f'    raise ValueError("x.wav: not audio")\n'
                          f"ValueError: x.wav: not audio")

    assert cli.user_error(worker_error(str(Path(cli.__file__).parent / "data" / "audio.py"))) == "x.wav: not audio"
    assert cli.user_error(worker_error("/venv/numpy/core/fromnumeric.py")) is None
