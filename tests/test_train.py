"""The training loop end to end on real synthesised speech: loss falls, the run directory is complete,
``kill -9`` + ``--resume`` equals an uninterrupted run bit for bit, and 2-rank gloo DDP equals one
process on the same global batch."""

from __future__ import annotations

import json
import statistics
import sys

import pytest
import torch

from conftest import MICRO_OVERRIDES, ROOT, cli_cmd, kill9_when_logged, run_cli, set_args
from data2vec.cli import main
from data2vec.train.checkpoint import load_checkpoint


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _pretrain_args(data, out, overrides) -> list[str]:
    return ["pretrain", "--preset", "audio-tiny-v1", "--data", str(data), "--out", str(out),
            *set_args(MICRO_OVERRIDES + overrides)]


def test_pretrain_loss_falls_and_run_dir_is_complete(speech_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_pretrain_args(speech_corpus, run, ["train.max_update=40", "train.save_interval_updates=20"])) == 0
    out = capsys.readouterr().out
    assert "usable" in out and "== run summary ==" in out

    recs = _metrics(run)
    assert [r["step"] for r in recs] == list(range(1, 41))
    first = statistics.mean(r["loss"] for r in recs[:5])
    last = statistics.mean(r["loss"] for r in recs[-5:])
    assert last < 0.7 * first, (first, last)
    assert all(r["target_var"] > 0.1 for r in recs), "targets collapsed"
    assert all(0 < r["feature_spread"] <= 1.5 for r in recs)  # the front-end monitor, every update
    assert recs[0]["lr"] < recs[5]["lr"]  # tri-stage warm-up
    assert all(0 <= r["data_wait_frac"] <= 1 and 0 <= r["data_wait_s"] for r in recs)  # measured, per record

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "audio-tiny-v1" and cfg["encoder"]["embed_dim"] == 32
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "curves.png").stat().st_size > 1000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 40
    assert summary["last_feature_spread"] == recs[-1]["feature_spread"]
    # the corpus it read, as prepare speech fingerprinted it
    assert summary["data_fingerprint"] == json.loads((speech_corpus / "corpus.json").read_text())["fingerprint"]
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    assert ckpt["step"] == 40 and ckpt["config"] == cfg
    assert any(k.startswith("teacher.module.") for k in ckpt["model"])
    assert not list(run.glob("*.tmp"))


def test_existing_run_needs_resume(speech_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = _pretrain_args(speech_corpus, run, ["train.max_update=2"])
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_kill9_then_resume_equals_uninterrupted(speech_corpus, tmp_path):
    # dropout + layerdrop + a loader worker exercise the RNG and data-position state.
    over = ["train.max_update=14", "train.save_interval_updates=4", "encoder.dropout=0.1",
            "encoder.layerdrop=0.2", "data.num_workers=1"]
    run_cli(*_pretrain_args(speech_corpus, tmp_path / "a", over))

    killed = kill9_when_logged(cli_cmd(*_pretrain_args(speech_corpus, tmp_path / "b", over)), tmp_path / "b", 5)
    assert killed.returncode == -9, killed.stderr
    saved = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["step"]
    assert saved in (4, 8)  # killed mid-run: the updates after the last checkpoint are lost
    run_cli("pretrain", "--out", str(tmp_path / "b"), "--resume")

    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 14 and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for s_a, s_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s_a["exp_avg_sq"], s_b["exp_avg_sq"])
    ma, mb = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [r["step"] for r in mb] == list(range(1, 15))
    assert [r["loss"] for r in ma] == [r["loss"] for r in mb]


def test_ddp_two_ranks_equals_one_process_with_accumulation(speech_corpus, tmp_path):
    common = ["train.max_update=3", "train.save_interval_updates=100"]
    run_cli(*_pretrain_args(speech_corpus, tmp_path / "single", common + ["train.update_freq=2"]))
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "data2vec.cli", *_pretrain_args(speech_corpus, tmp_path / "ddp", common + ["train.update_freq=1"])],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = load_checkpoint(tmp_path / "single" / "checkpoint_last.pt")
    d = load_checkpoint(tmp_path / "ddp" / "checkpoint_last.pt")
    assert d["world_size"] == 2 and len(d["rng"]) == 2
    for k in s["model"]:
        torch.testing.assert_close(d["model"][k], s["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    ls = [r["loss"] for r in _metrics(tmp_path / "single")]
    ld = [r["loss"] for r in _metrics(tmp_path / "ddp")]
    assert ls == pytest.approx(ld, rel=1e-5)
    assert ls[0] != ls[-1]  # the models trained: this is not two untouched initialisations agreeing


def test_resume_a_checkpoint_written_before_a_config_field_existed(speech_corpus, tmp_path):
    """Adding a config field with a default must not lock users out of their runs."""
    from data2vec.train.checkpoint import save_checkpoint

    run = tmp_path / "run"
    assert main(_pretrain_args(speech_corpus, run, ["train.max_update=2"])) == 0
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    del ckpt["config"]["model"]["targets"]["layer_results"]  # as written by an older version
    save_checkpoint(run / "checkpoint_last.pt", {k: v for k, v in ckpt.items() if k != "format_version"})
    cfg = json.loads((run / "config.json").read_text())
    del cfg["model"]["targets"]["layer_results"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["pretrain", "--out", str(run), "--resume", "--set", "train.max_update=3"]) == 0
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == 3


def test_trainer_runs_any_task_and_scales_group_lrs():
    """The loop is not data2vec-specific: a plain regression task trains; ``lr_scale`` scales a group's lr."""
    from torch import nn

    from data2vec.core.data2vec import StepLoss
    from data2vec.train.config import TrainConfig
    from data2vec.train.distributed import DistInfo
    from data2vec.train.loop import Trainer
    from data2vec.train.optim import OptimConfig

    class Regression(nn.Module):
        def __init__(self):
            super().__init__()
            self.trainable = nn.Linear(4, 1)

        @staticmethod
        def num_units(batch):
            return batch["x"].size(0)

        def step_loss(self, batch, wrapped):
            err = wrapped(batch["x"]).squeeze(-1) - batch["y"]
            return StepLoss((err**2).sum(), batch["x"].size(0), {"mean_y": batch["y"].mean().item()})

        def after_update(self, step):
            return {"seen": step}

    class Cfg:
        optim = OptimConfig(lr=0.05, lr_scheduler="fixed", weight_decay=0.0)
        train = TrainConfig(max_update=50, precision="fp32")
        encoder = None

    torch.manual_seed(0)
    task = Regression()
    trainer = Trainer(Cfg, task, DistInfo(0, 1, 0, torch.device("cpu")))
    trainer.optimizer.param_groups[-1]["lr_scale"] = 0.1
    x = torch.randn(64, 4)
    batch = {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0])}
    first = trainer.train_update([batch])
    for _ in range(48):
        last = trainer.train_update([batch])
    assert last["loss"] < 0.2 * first["loss"] and last["seen"] == 49 and last["units"] == 64
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.05, 0.005])


MICRO_V2 = [
    "encoder.conv_feature_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2", "encoder.embed_dim=32",
    "encoder.depth=2", "encoder.num_heads=2", "encoder.conv_pos_width=16", "encoder.conv_pos_groups=4",
    "encoder.conv_pos_depth=2", "model.targets.average_top_k_layers=2", "model.decoder.decoder_dim=16",
    "model.decoder.decoder_groups=4", "model.decoder.decoder_layers=2", "masking.clone_batch=2",
    "data.max_sample_size=16000", "data.min_sample_size=4000", "data.max_tokens=32000", "data.num_workers=0",
    "train.threads=1", "train.log_interval=1",
    # the decoder's noise at masked positions is the only random draw left; ranks draw their own, a single
    # process continues one stream, so the comparison switches it (and input dropout) off
    "model.decoder.mask_noise_std=0.0", "model.decoder.input_dropout=0.0",
]


def test_v2_ddp_two_ranks_equals_one_process_with_accumulation(speech_corpus, tmp_path):
    """data2vec 2.0 (clones, kept tokens, decoder, ALiBi) through the real CLI: 2 gloo ranks = 1 process."""
    def args(out, extra):
        return ["pretrain", "--preset", "audio-tiny-v2", "--data", str(speech_corpus), "--out", str(out),
                *set_args(MICRO_V2 + ["train.max_update=3", "train.save_interval_updates=100"] + extra)]

    run_cli(*args(tmp_path / "single", ["train.update_freq=2"]))
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "data2vec.cli", *args(tmp_path / "ddp", ["train.update_freq=1"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = load_checkpoint(tmp_path / "single" / "checkpoint_last.pt")
    d = load_checkpoint(tmp_path / "ddp" / "checkpoint_last.pt")
    assert s["config"]["version"] == 2 and d["world_size"] == 2
    for k in s["model"]:
        torch.testing.assert_close(d["model"][k], s["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    ls = [r["loss"] for r in _metrics(tmp_path / "single")]
    assert ls == pytest.approx([r["loss"] for r in _metrics(tmp_path / "ddp")], rel=1e-5)
    assert ls[0] != ls[-1] and all(r["wall_s"] > 0 for r in _metrics(tmp_path / "single"))


def test_compile_trains_like_eager_with_the_same_checkpoint_keys(speech_corpus, tmp_path):
    """train.compile (torch.compile of the Transformer stacks and the CNN, in place) changes neither the parameter
    names in the checkpoint nor, beyond float reassociation, the losses."""
    from torch._dynamo.utils import counters

    counters.clear()
    runs = {}
    for name, flag in (("eager", "false"), ("compiled", "true")):
        runs[name] = tmp_path / name
        assert main(_pretrain_args(speech_corpus, runs[name], ["train.max_update=3", "train.log_interval=1",
                                                               "train.precision=fp32", f"train.compile={flag}"])) == 0
    assert counters["stats"]["unique_graphs"] >= 3  # dynamo compiled the student, the teacher and the CNN
    eager, compiled = (_metrics(runs[k]) for k in ("eager", "compiled"))
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=1e-4)
    a, b = (load_checkpoint(runs[k] / "checkpoint_last.pt")["model"] for k in ("eager", "compiled"))
    assert list(a) == list(b)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
