"""Golden tests: every tiny preset's loss, grad norm and final weights for a few updates on a fixed batch,
bit-identical on CPU fp32, and every base/large preset instantiated on the ``meta`` device.

Bit-identical holds per kind of CPU only: the GEMM kernels differ between instruction sets (AVX-512 and AVX2 round
differently, about 1e-7 relative after three updates). So the golden file holds one record per CPU kind
(:func:`cpu_kind`: torch's CPU capability and the CPU's model name). On a recorded kind the test is bit-identical;
on any other it compares loss, grad norm and the weights' L2 norm with every recorded kind to ``CROSS_CPU_RTOL``, a
hundred times the cross-CPU rounding seen, still far below what a change of the arithmetic moves (1e-3 and more).

These pin the numerics before code is moved (issue "Architecture": torchtitan's rule for refactors): a
refactor must leave them unchanged. A deliberate change of the numerics regenerates them with
``python tests/test_golden.py --write`` (on each recorded CPU kind; ``--write --add-kind`` records a new kind
without dropping the others) and says why in its commit.

The batch is built by each modality's own collator from seeded synthetic samples (no files), and the update
runs through ``data2vec.train.loop.Trainer`` (forward, loss normalisation, backward, clipping, lr schedule,
AdamW, EMA), single-threaded so the arithmetic does not depend on the core count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data2vec.config import merge
from data2vec.presets import PRESETS, get_preset
from data2vec.pretrained import build_model

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "tiny_presets.json"
TINY = ["audio-tiny-v1", "audio-tiny-v2", "text-tiny-v1", "text-tiny-v2", "image-tiny-v1", "image-tiny-v2"]
UPDATES = 3
CROSS_CPU_RTOL = 1e-5  # unrecorded CPU kind: AVX2 vs AVX-512 differ by at most 2.4e-7 (audio-tiny-v1 grad norm)
VOCAB = 300  # text: a BPE of this size (the presets take it from the data's tokenizer)


def _config(name: str):
    over: dict = {"train": {"precision": "fp32", "max_update": 100, "seed": 1}}
    if name.startswith("text"):
        over["encoder"] = {"vocab_size": VOCAB}
    return merge(get_preset(name), over)


def _batch(cfg, encoder) -> dict:
    g = torch.Generator().manual_seed(1234)
    B = 4
    if cfg.modality == "audio":
        from data2vec.modalities.audio.dataset import AudioCollator
        from data2vec.modalities.audio.encoder import conv_frame_lengths

        samples = [{"id": i, "epoch": 1, "source": torch.randn(int(n), generator=g)}
                   for i, n in enumerate(torch.randint(12000, 24000, (B,), generator=g))]
        collate = AudioCollator(frame_lengths_fn=functools.partial(conv_frame_lengths, conv_layers=encoder.conv_layers),
                                mask_cfg=cfg.masking, seed=cfg.train.seed, pad=cfg.data.enable_padding,
                                max_sample_size=cfg.data.max_sample_size)
    elif cfg.modality == "text":
        from data2vec.modalities.text.collator import TextCollator

        samples = []
        for i, n in enumerate(torch.randint(40, 120, (B,), generator=g)):
            body = torch.randint(5, VOCAB - 1, (int(n),), generator=g).numpy()
            samples.append({"id": i, "epoch": 1, "tokens": np.concatenate([[0], body, [2]]).astype(np.int64)})
        collate = TextCollator(cfg.masking, cfg.train.seed, 1, VOCAB - 1, frozenset({0, 1, 2, 3, VOCAB - 1}), VOCAB)
    else:
        from data2vec.modalities.image.dataset import ImageCollator

        size = cfg.data.augment.image_size
        samples = [{"id": i, "epoch": 1, "label": i % 10,
                    "image": torch.randn(encoder.cfg.in_chans, size, size, generator=g)} for i in range(B)]
        grid = size // encoder.cfg.patch_size
        collate = ImageCollator(cfg.masking, (grid, grid), cfg.train.seed)
    return collate(samples)


def cpu_kind() -> str:
    """torch's CPU capability (``AVX512``, ``AVX2``, ...) and the CPU's model name: what decides the kernels' rounding."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{torch.backends.cpu.get_cpu_capability()} {model}"


def _weights_l2(model: torch.nn.Module) -> float:
    return float(sum(v.detach().double().pow(2).sum() for v in model.state_dict().values() if v.is_floating_point()))


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_preset(name: str) -> dict:
    from data2vec.train.distributed import DistInfo
    from data2vec.train.loop import Trainer, seed_everything

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = _config(name)
        seed_everything(cfg.train.seed)
        model = build_model(cfg)
        batch = _batch(cfg, model.student.encoder)
        trainer = Trainer(cfg, model, DistInfo(0, 1, 0, torch.device("cpu")))
        records = [trainer.train_update([batch]) for _ in range(UPDATES)]
        return {"loss": [r["loss"].hex() for r in records], "grad_norm": [r["grad_norm"].hex() for r in records],
                "weights_sha256": _digest(model), "weights_l2": _weights_l2(model).hex()}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def _floats(record: dict, key: str) -> list[float]:
    v = record[key]
    return [float.fromhex(x) for x in (v if isinstance(v, list) else [v])]


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_is_bit_identical(name, golden):
    got = run_preset(name)
    kind = cpu_kind()
    if kind in golden["tiny"]:
        want = golden["tiny"][kind][name]
        assert _floats(got, "loss") == _floats(want, "loss"), name
        assert _floats(got, "grad_norm") == _floats(want, "grad_norm"), name
        assert got["weights_sha256"] == want["weights_sha256"], f"{name}: final weights changed"
        return
    for other, records in golden["tiny"].items():  # a CPU kind with no record: close to every recorded kind
        want = records[name]
        for key in ("loss", "grad_norm", "weights_l2"):
            if key in want:
                assert _floats(got, key) == pytest.approx(_floats(want, key), rel=CROSS_CPU_RTOL, abs=0), \
                    f"{name}: {key} differs from the record of {other!r} by more than cross-CPU rounding"


def test_unrecorded_cpu_kind_still_catches_a_changed_loss(golden, monkeypatch):
    name = "image-tiny-v2"
    monkeypatch.setattr(sys.modules[__name__], "cpu_kind", lambda: "a CPU with no record")
    test_tiny_preset_is_bit_identical(name, golden)  # within cross-CPU rounding of every record
    changed = json.loads(json.dumps(golden))
    for records in changed["tiny"].values():
        records[name]["loss"][-1] = (float.fromhex(records[name]["loss"][-1]) * (1 + 1e-3)).hex()
    with pytest.raises(AssertionError, match="loss differs"):
        test_tiny_preset_is_bit_identical(name, changed)


def test_golden_file_records_the_cpu_kinds_it_was_made_on(golden):
    assert golden["tiny"] and all(set(r) == set(TINY) for r in golden["tiny"].values())


def _meta_counts() -> dict:
    out = {}
    for name in sorted(PRESETS):
        if "tiny" in name:
            continue
        cfg = get_preset(name)
        if cfg.modality == "text":
            cfg = merge(cfg, {"encoder": {"vocab_size": 50265}})
        with torch.device("meta"):
            model = build_model(cfg)
        assert all(p.is_meta for p in model.parameters())
        out[name] = {"student": sum(p.numel() for p in model.student.parameters()),
                     "teacher": sum(p.numel() for p in model.teacher.parameters())}
    return out


def test_every_base_and_large_preset_builds_on_meta(golden):
    assert _meta_counts() == golden["meta_params"]


if __name__ == "__main__" and "--write" in sys.argv:
    # records this CPU kind; `--add-kind` keeps the other kinds' records (the numerics did not change), plain
    # `--write` (a deliberate change of the numerics) drops them: regenerate them on those CPUs
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() and "--add-kind" in sys.argv else {"tiny": {}}
    old["tiny"][cpu_kind()] = {n: run_preset(n) for n in TINY}
    GOLDEN.write_text(json.dumps({"tiny": old["tiny"], "meta_params": _meta_counts()}, indent=1) + "\n")
    print(f"wrote {GOLDEN} for {cpu_kind()}")
