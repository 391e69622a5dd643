"""experiments/demo.py (``make demo``): its steps and the scheduler that runs them."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo", ROOT / "experiments" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
sys.modules["demo"] = demo  # dataclasses look their module up there
_spec.loader.exec_module(demo)


def test_steps_pretrain_then_finetune_both_arms(tmp_path):
    steps = {s.name: s for s in demo.steps(tmp_path)}
    for mod, (preset, _, updates) in demo.PRETRAIN.items():
        pre = steps[f"pretrain-{mod}"].command()
        assert pre[3:7] == ["pretrain", "--preset", preset, "--data"] and f"train.max_update={updates}" in pre
        pretrained, scratch = steps[f"finetune-{mod}-pretrained"], steps[f"finetune-{mod}-scratch"]
        assert pretrained.args[pretrained.args.index("--init") + 1] == str(tmp_path / f"pretrain-{mod}" / "checkpoint_last.pt")
        assert scratch.args[scratch.args.index("--preset") + 1] == preset
        assert f"pretrain-{mod}" in pretrained.deps and f"pretrain-{mod}" not in scratch.deps
        # the two arms differ only in where the encoder comes from
        strip = lambda a: [x for x in a if x not in (str(tmp_path / f"pretrain-{mod}" / "checkpoint_last.pt"), preset,  # noqa: E731
                                                     "--init", "--preset") and "finetune-" not in x]
        assert strip(pretrained.args) == strip(scratch.args)
    assert all("train.threads=1" in s.args for s in steps.values() if s.run is not None)


def test_resume_reuse_and_failure_propagation(tmp_path, monkeypatch):
    # steps are `python -c CODE`: one fails, what needs it is skipped, the rest runs; finished runs are reused
    monkeypatch.setattr(demo, "CLI", [sys.executable, "-c"])
    ok, bad = "import sys; sys.exit(0)", "import sys; sys.exit(3)"
    done = tmp_path / "done"
    done.mkdir()
    (done / "summary.json").write_text(json.dumps({"status": "done"}))
    half = tmp_path / "half"
    half.mkdir()
    (half / "checkpoint_last.pt").write_bytes(b"")
    steps = [demo.Step("a", [ok]), demo.Step("b", [bad]), demo.Step("c", [ok], deps=["b"]),
             demo.Step("d", [ok], deps=["c"]), demo.Step("e", [ok], deps=["a"]),
             demo.Step("f", [bad], run=done, done_file="summary.json"), demo.Step("g", [ok], run=half, done_file="metrics.json")]
    assert steps[6].command()[-1] == "--resume" and steps[0].command()[-1] == ok
    outcome = demo.run_all(steps, tmp_path, jobs=2)
    assert outcome["a"].startswith("done") and outcome["e"].startswith("done") and outcome["g"].startswith("done")
    assert outcome["b"].startswith("FAILED") and outcome["c"] == outcome["d"] == "skipped"
    assert outcome["f"] == "reused"
    assert (tmp_path / "b.log").is_file()


def test_table_reads_the_test_metrics(tmp_path):
    for arm, cer in (("pretrained", 0.8), ("scratch", 1.0)):
        run = tmp_path / f"finetune-audio-{arm}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"test": {"cer": cer, "loss": 10 * cer}}))
    text, rows = demo.table(tmp_path)
    assert "| audio | test CER, 10 min of labels (lower is better) | 0.800 | 1.000 |" in text
    assert rows[1] == {"modality": "audio", "metric": "loss", "label": "test CTC loss per utterance",
                       "pretrained": 8.0, "scratch": 10.0}
    assert rows[2]["pretrained"] is None and "| text | test accuracy, 1k labelled reviews (higher is better) | - | - |" in text
