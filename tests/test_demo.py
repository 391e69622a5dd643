"""experiments/demo.py (``make demo``): its steps and the scheduler that runs them."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo", ROOT / "experiments" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
sys.modules["demo"] = demo  # dataclasses look their module up there
_spec.loader.exec_module(demo)


@pytest.mark.parametrize("recreate", [False, True])
def test_steps_fine_tune_each_encoder_and_scratch_on_three_seeds(tmp_path, recreate):
    steps = {s.name: s for s in demo.steps(tmp_path, recreate)}
    for mod, (task, data, _, _) in demo.FINETUNE.items():
        preset = demo.PRESET[mod]
        for seed in demo.SEEDS:
            pre, scratch = steps[f"finetune-{mod}-pretrained-s{seed}"], steps[f"finetune-{mod}-scratch-s{seed}"]
            init = pre.args[pre.args.index("--init") + 1]
            if recreate:  # the re-created encoder, after its pretraining
                assert init == str(tmp_path / f"recreate-{mod}" / "checkpoint_last.pt") and f"recreate-{mod}" in pre.deps
                assert steps[f"recreate-{mod}"].args[:3] == ["pretrain", "--preset", preset]
            else:  # the shipped one: no pretraining step at all
                assert init == f"models/{preset}" and (demo.ROOT_MODELS / preset / "config.json").is_file()
                assert not any(n.startswith("recreate") for n in steps)
            assert scratch.args[scratch.args.index("--preset") + 1] == preset and f"train.seed={seed}" in scratch.args
            assert f"prepare-{data}" in pre.deps and not any(d.startswith("recreate") for d in scratch.deps)
            assert pre.args[:2] == scratch.args[:2] == ["finetune", task]
            # the arms share every setting but the encoder's source and their own learning rate
            shared = [a for a in pre.args if a in scratch.args]
            assert all(a in shared for a in demo._sets(demo.FINETUNE[mod][2]))
    assert steps["finetune-text-scratch-s1"].args.count("--set") > 0
    tok = [a for a in steps["finetune-text-scratch-s1"].args if a.startswith("data.tokenizer=")]
    assert tok == [f"data.tokenizer={'data/text-large' if recreate else 'models/text-tiny-v2'}"]
    for mod in demo.WATCH:  # watching the method train: from scratch, never used by a fine-tune
        assert steps[f"watch-{mod}"].args[:3] == ["pretrain", "--preset", demo.PRESET[mod]]
        assert not any(f"watch-{mod}" in s.deps for s in steps.values())
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


def test_table_gives_mean_sd_and_the_paired_difference(tmp_path):
    for arm, cers in (("pretrained", (0.4, 0.5, 0.6)), ("scratch", (0.5, 0.5, 0.8))):
        for seed, cer in zip(demo.SEEDS, cers):
            run = tmp_path / f"finetune-audio-{arm}-s{seed}"
            run.mkdir()
            (run / "metrics.json").write_text(json.dumps({"test": {"cer": cer}}))
    run = tmp_path / "finetune-text-pretrained-s1"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.7}}))
    text, rows = demo.table(tmp_path)
    audio = next(r for r in rows if r["modality"] == "audio")
    assert audio["pretrained"] == {1: 0.4, 2: 0.5, 3: 0.6} and audio["difference"] == pytest.approx([-0.1, 0.0, -0.2])
    line = next(ln for ln in text.splitlines() if ln.startswith("| audio"))
    assert "| 0.500 ± 0.100 | 0.600 ± 0.173 | -0.100 ± 0.100; pretrained better on 2 of 3 |" in line
    assert "(lower is better)" in line
    assert "| 0.700 (n=1) | - | - |" in next(ln for ln in text.splitlines() if ln.startswith("| text"))
