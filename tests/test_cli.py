"""The ``data2vec`` command: help texts, preset listing, clear errors, and the README's commands."""

from __future__ import annotations

import glob
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import MICRO_OVERRIDES, ROOT, run_cli, set_args
from data2vec.cli import main
from data2vec.presets import PRESETS


@pytest.mark.parametrize("argv", [["--help"], ["pretrain", "--help"], ["presets", "--help"],
                                  ["prepare", "--help"], ["prepare", "speech", "--help"],
                                  ["prepare", "text", "--help"], ["prepare", "images", "--help"],
                                  ["convert", "--help"], ["export", "--help"], ["extract", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: data2vec" in capsys.readouterr().out


def test_console_script_is_installed():
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "data2vec"), "presets"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert set(PRESETS) <= {line.split()[0] for line in proc.stdout.splitlines()}


def test_presets_lists_names_with_descriptions(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(PRESETS)
    assert all(len(ln.split()) > 3 for ln in lines)


def test_presets_show_prints_resolved_config(capsys):
    assert main(["presets", "--show", "audio-base-v1"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["encoder"]["depth"] == 12 and cfg["optim"]["lr"] == 5e-4


def test_overrides_and_dry_run(tmp_path, capsys):
    f = tmp_path / "o.yaml"
    f.write_text("optim:\n  lr: 0.002\ntrain:\n  max_update: 7\n")
    assert main(["pretrain", "--preset", "audio-tiny-v1", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--config", str(f), "--set", "train.max_update=9", "--set", "masking.mask_prob=0.5",
                 "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["optim"]["lr"] == 0.002  # from the file
    assert cfg["train"]["max_update"] == 9  # --set wins over the file
    assert cfg["masking"]["mask_prob"] == 0.5
    assert cfg["data"]["path"] == str(tmp_path.resolve())


@pytest.mark.parametrize("override, expect", [
    ("optim.lrr=1", "valid keys under 'optim'"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("train.max_update=1.5", "expected an integer"),
    ("nonsense", "must look like key.sub=value"),
    ("model.targets.average_top_k_layers=[1]", "expected an integer"),
])
def test_bad_overrides_are_one_line_errors(override, expect, tmp_path, capsys):
    rc = main(["pretrain", "--preset", "audio-tiny-v1", "--out", str(tmp_path / "r"), "--set", override, "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and "Traceback" not in err


def test_unknown_preset_and_missing_data(tmp_path, capsys):
    assert main(["pretrain", "--preset", "audio-huge", "--out", str(tmp_path / "r")]) == 2
    assert "data2vec presets" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "audio-tiny-v1", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "prepare speech" in capsys.readouterr().err


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


def test_readme_opens_with_the_two_make_commands():
    cmds = _readme_commands()
    assert cmds[:2] == ["make demo", "make test"]
    make = subprocess.run(["make", "-n", "demo", "test"], cwd=ROOT, capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    assert "experiments/demo.py" in make.stdout and "pytest" in make.stdout


MICRO_BY_PRESET = {
    "audio-tiny-v1": MICRO_OVERRIDES,
    "image-tiny-v1": ["encoder.embed_dim=32", "encoder.depth=2", "encoder.num_heads=2", "data.batch_size=8",
                      "model.targets.average_top_k_layers=2", "data.num_workers=0", "train.threads=1"],
    "text-tiny-v1": ["encoder.embed_dim=32", "encoder.ffn_embed_dim=64", "encoder.depth=2",
                     "encoder.num_heads=2", "model.targets.average_top_k_layers=2",
                     "data.max_tokens=512", "data.num_workers=0", "train.threads=1"],
}
MICRO_FINETUNE = {"asr": ["data.num_workers=0", "train.threads=1", "train.max_update=2", "eval_interval=2",
                          "data.max_tokens=64000"]}


def test_readme_data2vec_commands_run(tmp_path, speech_corpus):
    """Every `data2vec ...` line of the README runs: real for cheap ones, with --dry-run for training.
    A checkpoint a command needs is made first by running the README's own pretrain line for that run
    directory for one update with a micro model."""
    cmds = [c for c in _readme_commands() if c.startswith("data2vec ")]
    assert any("pretrain" in c for c in cmds) and any("prepare speech" in c for c in cmds)
    assert any("prepare text" in c for c in cmds) and any("finetune" in c for c in cmds)

    def localize(argv):
        shipped = {f"models/{d.name}" for d in (ROOT / "models").glob("*") if (d / "MODEL.md").is_file()}
        argv = [str(tmp_path / a) if a.startswith(("runs/", "data/", "models/")) and a not in shipped else a
                for a in argv]
        return [x for a in argv for x in (sorted(glob.glob(a)) if "*" in a else [a])]  # what the shell does

    def ensure_checkpoint(path: str):
        if Path(path).exists() or not path.endswith("checkpoint_last.pt"):
            return
        run_dir = str(Path(path).parent)
        line = next(c for c in cmds if " pretrain " in f" {c} " and run_dir.endswith(c.split("--out ")[1].split()[0]))
        argv = localize(shlex.split(line)[1:])
        preset = argv[argv.index("--preset") + 1]
        run_cli(*argv, *set_args(MICRO_BY_PRESET[preset] + ["train.max_update=1"]))

    def ensure_finetuned(path: str):
        """A fine-tuning run the command reads: the README's own finetune line for it, 2 updates."""
        if Path(path).exists() or not path.startswith(str(tmp_path / "runs")):
            return
        line = next(c for c in cmds if c.startswith("data2vec finetune ") and c.split("--out ")[1].split()[0] in path)
        argv = localize(shlex.split(line)[1:])
        ensure_checkpoint(argv[argv.index("--init") + 1])
        run_cli(*argv, *set_args(MICRO_FINETUNE[argv[1]]))

    for cmd in cmds:
        argv = localize(shlex.split(cmd)[1:])
        if argv[:2] == ["prepare", "speech"]:
            argv[argv.index("--hours") + 1] = "0.05"  # enough for held-out valid/test voices
        if argv[:2] == ["prepare", "text"] and "large" in argv:  # its other sources need `make data` (0.6 GB)
            argv += ["--sources", "fortunes", "gcide-quotes"]  # packages `make test` installs
        if argv[0] == "convert":
            ensure_checkpoint(argv[1])
        if argv[0] in ("evaluate", "transcribe", "export"):
            ensure_finetuned(argv[2] if argv[0] == "evaluate" else argv[1])
        if "--init" in argv:
            ensure_checkpoint(argv[argv.index("--init") + 1])
        if argv[0] in ("pretrain", "finetune"):
            if "--resume" in argv and "--init" not in argv:  # needs a run to resume: a fresh dry run of the recipe
                argv += ["--preset", "audio-tiny-v1"]
            argv.append("--dry-run")
        proc = run_cli(*argv, check=False, timeout=180)
        assert proc.returncode == 0, f"README command failed: {cmd}\n{proc.stdout}\n{proc.stderr}"


def test_readme_python_example_runs(tmp_path, speech_corpus, monkeypatch):
    text = (ROOT / "README.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "pretrain(cfg" in c]
    monkeypatch.chdir(tmp_path)
    code = code.replace('"data/speech"', repr(str(speech_corpus))).replace('"max_update": 100', '"max_update": 2')
    shrink = "cfg = merge(cfg, {'data': {'max_sample_size': 16000, 'num_workers': 0}})\n"  # keep it fast
    scope: dict = {}
    exec(code.replace("summary = pretrain(", shrink + "summary = pretrain("), scope)
    assert scope["summary"]["steps"] == 2
    assert (tmp_path / "runs" / "from-python" / "checkpoint_last.pt").is_file()
