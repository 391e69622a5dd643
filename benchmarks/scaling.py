"""Scaling on paper: memory per GPU, FLOPs, throughput and batch settings of the base and large presets.

Every number comes from the preset configs and from each preset's model *built* on the meta device (no
weights allocated): parameters are counted from the built student and EMA teacher, FLOPs from the built
modules' weight shapes times the positions each one runs on. Nothing is measured here except, optionally,
what ``--measured-samples-per-s`` supplies.

    python benchmarks/scaling.py                       # JSON on stdout, markdown tables -> docs/scaling.md
    python benchmarks/scaling.py --gpus 8 16 64 --peak-tflops 989 --mfu 0.4
    python benchmarks/scaling.py --measured-samples-per-s image-base-v2=310.5   # examples/s on one GPU
    python benchmarks/scaling.py --no-doc --presets text-base-v2                # JSON only

Formulas (documented again in docs/scaling.md, which this script writes):

FLOPs (forward, per micro-batch): every ``nn.Linear``/``nn.Conv{1,2}d`` costs 2 x weight.numel() per output
position it produces (a multiply-add = 2 FLOPs; biases, norms, activations, softmax and the loss are not
counted), and every attention block adds 4 x s^2 x d per row (QK^T and AV). The positions each module runs on:
- conv feature encoder (audio): its own output length per layer; ``post_extract_proj`` / ``project_features``
  and the positional convs: T frames; patch embedding: N patches; text embeddings: 0 (lookups);
- Transformer blocks: v1 all T positions (+ CLS for images); v2 student: B x M rows of the K kept positions
  (+ extra tokens), v2 teacher: B rows of all T (+ extra); v2 audio's relative positional conv runs on the
  full length for every clone (masked frames zeroed);
- v1 head: the masked positions; v2 decoder: all T positions of the B x M rows.
Update = student forward + backward (2 x forward; the first layer of the input stem has no input gradient,
so 1 x) + teacher forward (whatever modules the built teacher holds). No activation recomputation; layerdrop
ignored (every layer counted).

Memory (bytes per GPU; bf16 autocast, fp32 weights, as ``data2vec pretrain`` trains on CUDA):
- DDP: parameters 4 P_s, gradients 4 P_g, AdamW 8 P_g (two fp32 moments), teacher 4 P_t (fp32 EMA, not
  trained), other = DDP gradient buckets 4 P_g (``gradient_as_bucket_view`` is off) + autocast's bf16 copies
  of the student weights 2 P_s (cached for the forward, saved for the backward);
- FSDP (FULL_SHARD, ``MixedPrecision(param_dtype=bf16, reduce_dtype=bf16)``, fp32 sharded master, one unit
  per Transformer block + a root unit with the rest, the teacher sharded the same way): parameters 4 P_s/N,
  gradients 4 P_g/N, AdamW 8 P_g/N, teacher 4 P_t/N, other = unsharded bf16 working copies: parameters of the
  root unit + 2 blocks (current + prefetched) and gradients of the root unit + 1 block, 2 bytes each.
  Our trainer does not wrap models in FSDP yet: this column is what it would take.
- Activations (identical under DDP and FSDP; per-GPU micro-batch): per Transformer block
  s x b x h x 38 bytes (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
  Models", eq. 1: s b h (34 + 5 a s / h) with 16-bit activations and 1-byte dropout masks; the 5 a s / h
  attention-score term is dropped because ``F.scaled_dot_product_attention`` runs fused kernels that keep no
  s x s matrices, and 4 is added for the two LayerNorm inputs saved in fp32 under autocast); conv stems
  8 bytes (conv feature encoder: bf16 conv input, fp32 LN input, bf16 GELU input) or 10 bytes (positional
  convs, v2 decoder: fp32 LN and GELU inputs) per output element; v2 audio's ALiBi bias: a bf16
  rows x H x s^2 copy saved per block; the teacher's K kept layer outputs (bf16) + fp32 targets + one
  layer's working set: (2K + 16) s b h; loss tensors 12 bytes per masked position and channel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from data2vec.modalities.audio.encoder import parse_conv_layers
from data2vec.presets import get_preset
from data2vec.pretrained import build_model

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["audio-base-v1", "text-base-v1", "image-base-v1", "image-large-v1", "audio-base-v2", "audio-large-v2",
           "image-base-v2", "image-large-v2", "text-base-v2", "text-large-v2"]
TEXT_VOCAB = 50265  # RoBERTa's GPT-2 BPE dictionary (SPEC A.2)
# GPUs of the published runs (../shared/docs/SPEC.md section A); the per-GPU batch is read from each preset.
PAPER_GPUS = {"audio-base-v1": 16, "text-base-v1": 16, "image-base-v1": 16, "image-large-v1": 64,
              "audio-base-v2": 8, "audio-large-v2": 48, "image-base-v2": 16, "image-large-v2": 16,
              "text-base-v2": 16, "text-large-v2": 32}
PAPER_SOURCE = {"audio-base-v1": "A.1: 16 GPUs x 3.8M samples", "text-base-v1": "A.2: 16 GPUs x 8192 tokens",
                "image-base-v1": "A.3: 16 x 128 = 2048 images", "image-large-v1": "A.3: 64 x 64 = 4096 images",
                "audio-base-v2": "A.4: 8 GPUs x 1M samples", "audio-large-v2": "A.4: 48 GPUs x 320k samples",
                "image-base-v2": "A.4: 16 GPUs x 16 images", "image-large-v2": "A.4: 16 GPUs x 8 images",
                "text-base-v2": "A.4: 16 GPUs x 4 x 512 tokens", "text-large-v2": "A.4: 32 GPUs x 2 x 512 tokens"}
SAMPLE_RATE = 16000
GiB = 2**30


# ---- building and counting -----------------------------------------------------------------------------

@contextlib.contextmanager
def _meta_parameters():
    """Fallback for encoders whose __init__ reads tensor values: parameters are moved to meta as registered."""
    orig = nn.Module.register_parameter

    def register(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        return orig(self, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = orig


def preset_config(name: str):
    cfg = get_preset(name)
    if cfg.modality == "text" and not cfg.encoder.vocab_size:
        cfg.encoder.vocab_size = TEXT_VOCAB
    return cfg


def build_meta(cfg):
    """The preset's ``Data2Vec`` (student + EMA teacher) with every parameter on the meta device."""
    try:
        with torch.device("meta"):
            model = build_model(cfg)
    except (NotImplementedError, RuntimeError):
        with _meta_parameters():
            model = build_model(cfg)
    return model


_BLOCK = re.compile(r"(?:^|\.)(layers|blocks|prenet)\.(\d+)\.")


def _is_block_param(name: str) -> bool:
    return bool(_BLOCK.search(name)) and not name.startswith("decoder.")


def count_parameters(model) -> dict:
    """Exact counts from the built model. The teacher is whatever ``model.teacher.module`` holds."""
    student, teacher = model.student, model.teacher.module
    s_named = list(student.named_parameters())
    blocks: dict[str, int] = {}
    for n, p in s_named:
        m = _BLOCK.search(n)
        if m and not n.startswith("decoder."):
            key = n[: m.end()]
            blocks[key] = blocks.get(key, 0) + p.numel()
    copy_keys = model.teacher.copy_keys
    t_named = list(teacher.named_parameters())
    enc = student.encoder
    src = model._teacher_source()  # the student module the EMA teacher was copied from (and tracks)
    src_name = next(n for n, m in student.named_modules() if m is src)
    return {
        "student": sum(p.numel() for _, p in s_named),
        "student_trainable": sum(p.numel() for _, p in s_named if p.requires_grad),
        "student_encoder": sum(p.numel() for p in enc.parameters()),
        "head_or_decoder": sum(p.numel() for n, p in s_named if not n.startswith("encoder.")),
        "teacher": sum(p.numel() for _, p in t_named),
        "teacher_averaged": sum(p.numel() for n, p in t_named if n not in copy_keys),
        "teacher_copied": sum(p.numel() for n, p in t_named if n in copy_keys),
        "teacher_buffers": sum(b.numel() for b in teacher.buffers()),
        "teacher_scope": f"EMA of student.{src_name} ({type(teacher).__name__})",
        "teacher_modules": sorted({n.split(".")[0] for n, _ in t_named}),
        "num_blocks": len(blocks),
        "block_max": max(blocks.values()),
        "blocks_total": sum(blocks.values()),
        "root": sum(p.numel() for _, p in s_named) - sum(blocks.values()),
    }


# ---- shapes of a micro-batch ---------------------------------------------------------------------------

@dataclass
class Shape:
    """One GPU's micro-batch: B examples (clips / sequences / images) of T positions each."""

    B: float
    T: int
    masked_per_row: float  # v1: per example; v2: per clone
    M: int = 1  # v2 clones per example
    kept: int = 0  # v2: kept positions per clone
    extra: int = 0  # CLS / extra tokens in front of the Transformer input
    cnn_lengths: list[int] = field(default_factory=list)  # audio: output length of each conv layer
    samples: int = 0  # audio samples per clip


def example_length(cfg) -> int:
    """Audio samples per clip (max_sample_size: the longest crop), tokens per sequence, or image size."""
    if cfg.modality == "audio":
        return cfg.data.max_sample_size
    if cfg.modality == "text":
        return cfg.data.tokens_per_sample
    return cfg.encoder.image_size


def per_gpu_budget(cfg) -> float:
    """The preset's per-GPU micro-batch in its own unit: audio samples (max_tokens), sequences, images."""
    if cfg.modality == "audio":
        return cfg.data.max_tokens
    if cfg.modality == "text":
        seqs = cfg.data.max_tokens // cfg.data.tokens_per_sample
        return min(seqs, cfg.data.max_sentences) if getattr(cfg.data, "max_sentences", None) else seqs
    return cfg.data.batch_size


def micro_batch_shape(cfg, budget: float, length: int | None = None, masked: float | None = None) -> Shape:
    """Shape of a micro-batch of ``budget`` (audio: samples, modelled as budget / clip-length clips of the
    longest crop; text: sequences; images: images). ``masked`` overrides the masked positions per row."""
    length = length or example_length(cfg)
    cnn = []
    if cfg.modality == "audio":
        spec = cfg.encoder.conv_feature_layers
        L = length
        for _, k, s in parse_conv_layers(spec):
            L = (L - k) // s + 1
            cnn.append(L)
        T, B = cnn[-1], budget / length
    elif cfg.modality == "text":
        T, B = length, budget
    else:
        T, B = (length // cfg.encoder.patch_size) ** 2, budget
    mk = cfg.masking
    if cfg.version == 2:
        p = mk.mask_prob
        kept = int(T * (1 - p)) if getattr(mk, "inverse_mask", True) else T - int(T * p)
        extra = getattr(cfg.encoder, "num_extra_tokens", 0)
        return Shape(B, T, masked if masked is not None else T - kept, mk.clone_batch, kept, extra, cnn, length)
    if masked is None:
        if cfg.modality == "image":
            masked = mk.num_mask_patches
        else:  # spans of length l started at rate p/l, overlaps merged: 1 - (1 - p/l)^l (an approximation)
            p, ln = mk.mask_prob, getattr(mk, "mask_length", None) or mk.mask_multiple_length
            masked = T * (1 - (1 - p / ln) ** ln)
    return Shape(B, T, masked, 1, T, 1 if cfg.modality == "image" else 0, cnn, length)


# ---- FLOPs ---------------------------------------------------------------------------------------------

def _stage(name: str) -> str | None:
    if name.startswith("decoder"):
        return "decoder"
    if name.startswith("head"):
        return "head"
    if "conv_layers." in name:
        return "cnn"
    if "project_features" in name or "post_extract_proj" in name:
        return "proj"
    if "patch_embed" in name or "local_encoder.proj" in name:
        return "patch"
    if "pos_conv" in name or "relative_positional_encoder" in name:
        return "posconv"
    if _BLOCK.search(name + "."):
        return "block"
    return None


def _matmul_modules(module: nn.Module):
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            yield name, m


def forward_flops(module: nn.Module, cfg, shape: Shape, *, student: bool) -> dict:
    """Forward FLOPs of ``module`` (a built student or teacher) on one micro-batch, by stage."""
    B, T, M = shape.B, shape.T, shape.M
    v2 = cfg.version == 2
    rows_blk = B * M if (v2 and student) else B
    seq_blk = (shape.kept if (v2 and student) else T) + shape.extra
    rows_full = B * M if (v2 and student) else B  # posconv (v2 runs per clone, on all T) and decoder
    out: dict[str, float] = {}
    first_stem = 0.0
    for name, m in _matmul_modules(module):
        st = _stage(name.removeprefix("encoder."))
        if st is None:
            raise ValueError(f"{cfg.preset}: no FLOP rule for module {name!r} ({type(m).__name__})")
        w = m.weight.numel()
        if st == "cnn":
            i = int(re.search(r"conv_layers\.(\d+)", name).group(1))
            f = 2 * w * shape.cnn_lengths[i] * B
            if i == 0:
                first_stem = f
        elif st == "patch":
            f = 2 * w * T * B
            first_stem = f
        elif st == "proj":
            f = 2 * w * T * B
        elif st == "posconv":
            f = 2 * w * T * rows_full
        elif st == "block":
            f = 2 * w * seq_blk * rows_blk
        elif st == "head":
            f = 2 * w * shape.masked_per_row * B
        else:  # decoder: every position of every clone
            f = 2 * w * T * rows_full
        out[st] = out.get(st, 0.0) + f
    d = cfg.encoder.embed_dim
    n_blocks = len({n[: _BLOCK.search(n + ".").end()] for n, _ in _matmul_modules(module)
                    if _stage(n.removeprefix("encoder.")) == "block"})
    out["attention"] = 4 * seq_blk**2 * d * rows_blk * n_blocks
    out["_first_stem"] = first_stem
    return out


def step_flops(model, cfg, shape: Shape) -> dict:
    """FLOPs of one micro-batch update: student forward + backward, teacher forward."""
    s = forward_flops(model.student, cfg, shape, student=True)
    t = forward_flops(model.teacher.module, cfg, shape, student=False)
    s_fwd = sum(v for k, v in s.items() if not k.startswith("_"))
    t_fwd = sum(v for k, v in t.items() if not k.startswith("_"))
    s_bwd = 2 * s_fwd - s["_first_stem"]  # no input gradient for the first stem layer
    return {"student_forward": s_fwd, "student_backward": s_bwd, "teacher_forward": t_fwd,
            "total": s_fwd + s_bwd + t_fwd, "attention": 3 * s["attention"] + t["attention"],
            "student_by_stage": {k: v for k, v in s.items() if not k.startswith("_")},
            "teacher_by_stage": {k: v for k, v in t.items() if not k.startswith("_")}}


# ---- memory --------------------------------------------------------------------------------------------

def activation_bytes(cfg, counts: dict, shape: Shape) -> dict:
    """Activation memory of one micro-batch (see the module docstring for the per-term assumptions)."""
    e = cfg.encoder
    h = e.embed_dim
    heads = e.num_heads
    B, T, M = shape.B, shape.T, shape.M
    v2 = cfg.version == 2
    rows, s = (B * M, shape.kept + shape.extra) if v2 else (B, T + shape.extra)
    a = {"blocks": 38 * s * rows * h * counts["num_blocks"]}
    stem = 0.0
    if cfg.modality == "audio":
        spec = e.conv_feature_layers
        dims = [c for c, _, _ in parse_conv_layers(spec)]
        stem += 8 * B * sum(L * c for L, c in zip(shape.cnn_lengths, dims)) + 2 * B * shape.samples
        stem += B * T * dims[-1] * (4 + 2)  # feature LayerNorm (fp32 input) + projection input (bf16)
        depth = e.conv_pos_depth
        stem += 10 * (B * M if v2 else B) * T * h * depth
        if v2 and e.use_alibi_encoder:
            a["alibi_bias"] = 2 * rows * heads * s**2 * counts["num_blocks"]
    elif cfg.modality == "text":
        stem += 5 * B * T * h  # embedding LayerNorm (fp32 input) + dropout mask
    else:
        stem += 2 * B * e.in_chans * e.image_size**2
    a["stem"] = stem
    if v2:
        d = cfg.model.decoder
        a["decoder"] = 10 * B * M * T * d.decoder_dim * d.decoder_layers + 2 * B * M * T * h
    k = cfg.model.targets.average_top_k_layers
    a["teacher_targets"] = (2 * k + 16) * B * (T + shape.extra) * h
    a["loss"] = 12 * B * M * shape.masked_per_row * h
    a["total"] = sum(a.values())
    return a


def memory_per_gpu(counts: dict, activations: float, n_gpus: int, strategy: str) -> dict:
    """Bytes per GPU under ``ddp`` or ``fsdp`` (see the module docstring)."""
    Ps, Pg, Pt = counts["student"], counts["student_trainable"], counts["teacher"] + counts["teacher_buffers"]
    if strategy == "ddp":
        m = {"params": 4 * Ps, "grads": 4 * Pg, "optimizer": 8 * Pg, "teacher": 4 * Pt,
             "other": 4 * Pg + 2 * Ps}
    elif strategy == "fsdp":
        N = n_gpus
        root, blk = counts["root"], counts["block_max"]
        m = {"params": 4 * Ps / N, "grads": 4 * Pg / N, "optimizer": 8 * Pg / N, "teacher": 4 * Pt / N,
             "other": 2 * (root + 2 * blk) + 2 * (root + blk)}
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    m["activations"] = activations
    m["total"] = sum(m.values())
    return m


def comm_bytes_per_update(counts: dict, n_gpus: int, strategy: str, update_freq: int) -> float:
    """Bytes each GPU sends per optimizer update (ring collectives: (N-1)/N of the buffer per pass)."""
    N, Pg = n_gpus, counts["student_trainable"]
    ring = (N - 1) / N
    if strategy == "ddp":  # one fp32 all-reduce of the gradients (no_sync on the other micro-batches)
        return 2 * ring * 4 * Pg
    # per micro-batch: all-gather bf16 params (forward, again in backward), reduce-scatter bf16 grads,
    # all-gather the bf16 teacher
    return update_freq * ring * (2 * 2 * counts["student"] + 2 * Pg + 2 * counts["teacher"])


# ---- batch settings ------------------------------------------------------------------------------------

def batch_settings(cfg, n_gpus: int) -> dict:
    """Per-GPU micro-batch and ``train.update_freq`` on ``n_gpus`` that give the paper's effective batch, with
    the per-GPU micro-batch at most the paper's (memory)."""
    ref = per_gpu_budget(cfg)
    paper_gpus = PAPER_GPUS[cfg.preset]
    effective = ref * paper_gpus
    per_update = effective / n_gpus
    uf = max(1, math.ceil(per_update / ref - 1e-9))
    per_gpu = per_update / uf
    exact, note = True, ""
    if abs(per_gpu - round(per_gpu)) > 1e-9:
        exact, per_gpu = False, math.floor(per_gpu)
        note = f"{effective:g} does not divide into {n_gpus} x {uf}: per-GPU rounded down"
    per_gpu = int(round(per_gpu))
    if cfg.modality == "audio" and per_gpu < cfg.data.max_sample_size:
        exact = False
        note = (f"max_tokens {per_gpu} < max_sample_size {cfg.data.max_sample_size}: 20-s crops no longer fit; "
                f"lower data.max_sample_size to {per_gpu} (changes the crops) or use <= "
                f"{int(effective // cfg.data.max_sample_size)} GPUs")
    sets = [f"train.update_freq={uf}"]
    if cfg.modality == "audio":
        sets.append(f"data.max_tokens={per_gpu}")
    elif cfg.modality == "text":
        sets.append(f"data.max_tokens={per_gpu * cfg.data.tokens_per_sample}")
        if getattr(cfg.data, "max_sentences", None):
            sets.append(f"data.max_sentences={per_gpu}")
    else:
        sets.append(f"data.batch_size={per_gpu}")
    return {"gpus": n_gpus, "per_gpu": per_gpu, "update_freq": uf, "effective": n_gpus * per_gpu * uf,
            "paper_effective": effective, "exact": exact, "note": note,
            "set": " ".join(f"--set {s}" for s in sets)}


# ---- one preset ----------------------------------------------------------------------------------------

def unit_of(cfg) -> tuple[str, str]:
    """(budget unit, example name)"""
    if cfg.modality == "audio":
        return "audio samples", f"{cfg.data.max_sample_size / SAMPLE_RATE:g}-s clip"
    if cfg.modality == "text":
        return "sequences", f"{cfg.data.tokens_per_sample}-token sequence"
    return "images", f"{cfg.encoder.image_size}px image"


def analyse(name: str, gpus=(8, 16, 64), peak_tflops: float = 989.0, mfu: float = 0.4,
            measured: float | None = None) -> dict:
    cfg = preset_config(name)
    model = build_meta(cfg)
    counts = count_parameters(model)
    ref_shape = micro_batch_shape(cfg, per_gpu_budget(cfg))
    ref_flops = step_flops(model, cfg, ref_shape)
    flops_per_example = ref_flops["total"] / ref_shape.B
    tokens_per_example = ref_shape.T
    assumed = peak_tflops * 1e12 * mfu / flops_per_example
    ex_per_s = measured if measured is not None else assumed
    unit, example = unit_of(cfg)
    out = {"preset": name, "modality": cfg.modality, "version": cfg.version, "params": counts,
           "paper": {"gpus": PAPER_GPUS[name], "per_gpu": per_gpu_budget(cfg), "unit": unit,
                     "source": f"SPEC {PAPER_SOURCE[name]}", "max_update": cfg.train.max_update},
           "example": example, "positions_per_example": tokens_per_example,
           "micro_batch": {"examples": ref_shape.B, "positions": ref_shape.T, "clones": ref_shape.M,
                           "kept": ref_shape.kept, "masked_per_row": ref_shape.masked_per_row},
           "flops_per_micro_batch": ref_flops, "flops_per_example": flops_per_example,
           "throughput_source": "measured" if measured is not None else f"assumed {peak_tflops:g} TFLOP/s x {mfu:g} MFU",
           "examples_per_s_per_gpu": ex_per_s,
           "positions_per_s_per_gpu": ex_per_s * tokens_per_example,
           "implied_mfu": ex_per_s * flops_per_example / (peak_tflops * 1e12),
           "scaling": []}
    if cfg.modality == "audio":
        out["audio_s_per_s_per_gpu"] = ex_per_s * ref_shape.samples / SAMPLE_RATE
    for n in gpus:
        bs = batch_settings(cfg, n)
        shape = micro_batch_shape(cfg, bs["per_gpu"])
        act = activation_bytes(cfg, counts, shape)
        fl = step_flops(model, cfg, shape)
        # time per update: the per-GPU examples/s figure is taken as independent of the micro-batch size
        examples_per_update_per_gpu = shape.B * bs["update_freq"]
        t_update = examples_per_update_per_gpu / ex_per_s
        row = {**bs, "micro_batch_examples": shape.B, "activations": act,
               "ddp": memory_per_gpu(counts, act["total"], n, "ddp"),
               "fsdp": memory_per_gpu(counts, act["total"], n, "fsdp"),
               "comm_bytes_per_update": {s: comm_bytes_per_update(counts, n, s, bs["update_freq"]) for s in ("ddp", "fsdp")},
               "flops_per_update_per_gpu": fl["total"] * bs["update_freq"],
               "seconds_per_update": t_update,
               "examples_per_s": ex_per_s * n,
               "positions_per_s": ex_per_s * n * tokens_per_example,
               "days_for_max_update": t_update * cfg.train.max_update / 86400}
        out["scaling"].append(row)
    return out


# ---- check of the FLOP formula against torch.utils.flop_counter (docs/benchmarks*.jsonl) ---------------

def flop_counter_check(root: Path = ROOT) -> list[dict]:
    """Analytic FLOPs per step vs those ``torch.utils.flop_counter`` counted in benchmarks/pretrain_step.py's
    recorded runs (same presets, batch shapes and masked counts)."""
    rows, seen = [], set()
    for f in ("docs/benchmarks.jsonl", "docs/benchmarks-v2.jsonl"):
        p = root / f
        if not p.is_file():
            continue
        for line in p.read_text().splitlines():
            r = json.loads(line)
            if r.get("impl") != "data2vec" or "gflop_per_step" not in r or r["preset"] in seen:
                continue
            seen.add(r["preset"])
            cfg = get_preset(r["preset"])
            if cfg.modality == "text":
                cfg.encoder.vocab_size = 8000 if "tiny" in r["preset"] else TEXT_VOCAB
            b, length = (int(x) for x in re.match(r"(\d+)\D+?(\d+)", r["batch"]).groups())
            unit = length if cfg.modality == "audio" else 1
            shape = micro_batch_shape(cfg, b * unit, length)
            rows_ = b * shape.M
            shape.masked_per_row = r["masked"] / rows_
            model = build_meta(cfg)
            fl = step_flops(model, cfg, shape)
            ours, no_attn = fl["total"] / 1e9, (fl["total"] - fl["attention"]) / 1e9
            rows.append({"preset": r["preset"], "batch": r["batch"], "source": f,
                         "flop_counter_gflop": r["gflop_per_step"], "analytic_gflop": round(ours, 2),
                         "analytic_without_attention_gflop": round(no_attn, 2),
                         "ratio_without_attention": round(no_attn / r["gflop_per_step"], 4),
                         "has_conv": cfg.modality != "text"})
    return rows


# ---- output --------------------------------------------------------------------------------------------

def _g(x: float) -> str:
    return f"{x / GiB:.2f}"


def _m(x: float) -> str:
    return f"{x / 1e6:.2f}"


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _si(x: float) -> str:
    for div, suf in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {suf}"
    return f"{x:.3g}"


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks/scaling.py", "src"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes under src/ or in this script)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(results: list[dict], args, command: str, check: list[dict]) -> str:
    peak, mfu = args.peak_tflops, args.mfu
    L = ["# Scaling on paper", "",
         f"Generated by `{command}` at commit `{commit()}` (torch {torch.__version__}). Do not edit by hand: "
         "rerun the command. Everything here is computed from the preset configs and from each preset's model "
         "built on the meta device (`benchmarks/scaling.py`); nothing was run on a GPU.", "",
         "**Throughput is an assumption, not a measurement**" + (
             "" if not args.measured else " (except the presets given with `--measured-samples-per-s`)") +
         f": one GPU is assumed to sustain {peak:g} TFLOP/s (H100 SXM dense bf16 peak) x {mfu:g} MFU = "
         f"{peak * mfu:g} TFLOP/s on the FLOPs counted below, and N GPUs N times that (no communication or "
         "input-pipeline overhead). The only measured step times are CPU ones, in `docs/benchmarks.md`. "
         "To replace the assumption with a measurement: `python benchmarks/scaling.py --measured-samples-per-s "
         "PRESET=EXAMPLES_PER_S` (examples/s on one GPU at the per-GPU micro-batch below, e.g. the `samples_per_s` "
         "of `benchmarks/pretrain_step.py --device cuda --precision bf16` run at that shape).", "",
         "Units. An *example* is a 20-s audio clip (320,000 samples, 999 frames), a 512-token sequence or a "
         "224x224 image. A v2 example is encoded M times by the student (clones) and once by the teacher. "
         "Audio micro-batches are `max_tokens` samples modelled as max_tokens / 320,000 clips of the longest "
         "crop (fractional), the worst case for attention and memory.", ""]
    L += ["## Parameters (counted from the built models)", "",
          "Text presets built with `encoder.vocab_size=50265` (RoBERTa BPE). *Teacher* = what the EMA teacher "
          "module of the built model holds (fp32); *copied* = teacher parameters copied from the student at each "
          "step instead of averaged (`ema_layers_only`), still stored.", "",
          "| preset | student (M) | of which head/decoder (M) | teacher (M) | teacher copied (M) | teacher = | "
          "Transformer blocks | largest block (M) | rest = FSDP root (M) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["params"]
        L.append(f"| {r['preset']} | {_m(c['student'])} | {_m(c['head_or_decoder'])} | {_m(c['teacher'])} | "
                 f"{_m(c['teacher_copied'])} | {c['teacher_scope']}: {', '.join(c['teacher_modules'])} | "
                 f"{c['num_blocks']} | {_m(c['block_max'])} | {_m(c['root'])} |")
    L += ["", "Reading it: v1 speech and v2 speech/text teachers hold no local encoder (the student's CNN / "
          "embedding features are fed to them); the v2 text teacher is the 12 or 24 blocks only, so it is "
          "the smallest relative to its student; v1 text, v1 and v2 image teachers copy the whole encoder.", ""]
    L += ["## FLOPs per update (per GPU micro-batch at the paper's per-GPU batch)", "",
          "Forward FLOPs = sum over every Linear/Conv of 2 x weight elements x output positions it computes "
          "(+ 4 s^2 d per attention block and row); backward = 2 x forward (1 x for the first input-stem layer); "
          "update = student forward + backward + teacher forward. v2: the student blocks run on the K kept "
          "positions of M clones, the decoder (and v2 audio's positional conv) on all T positions of every clone, "
          "the teacher once per example.", "",
          "| preset | micro-batch | positions T | v2 clones M x kept K | student fwd (FLOP) | teacher fwd (FLOP) | "
          "update (FLOP) | per example (FLOP) | teacher share |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f, mb = r["flops_per_micro_batch"], r["micro_batch"]
        mk = f"{mb['clones']} x {mb['kept']}" if r["version"] == 2 else "-"
        L.append(f"| {r['preset']} | {mb['examples']:.4g} x {r['example']} | {mb['positions']} | {mk} | "
                 f"{_si(f['student_forward'])} | {_si(f['teacher_forward'])} | {_si(f['total'])} | "
                 f"{_si(r['flops_per_example'])} | {f['teacher_forward'] / f['total']:.1%} |")
    if check:
        L += ["", "Check of the formula: the same count for the batches `benchmarks/pretrain_step.py` ran on the "
              "CPU, against what `torch.utils.flop_counter` counted there (`docs/benchmarks*.jsonl`, same masked "
              "counts). Two known differences of the counter: it has no formula for the CPU attention kernel "
              "(`_scaled_dot_product_flash_attention_for_cpu`), so attention is compared out; and its "
              "`convolution_backward` formula counts the strided/grouped convolutions' backward at more than "
              "2x their forward (audio-tiny-v1: 1.28 GFLOP of conv backward for 0.36 of conv forward), so rows "
              "with strided or grouped convolutions (speech CNN and positional conv, patch embeddings, v2 audio and "
              "image decoders) come out lower here. Text has none (the v2 text decoder's conv is neither) and "
              "agrees exactly; `tests/test_scaling.py` checks that equality on a tiny model.", "",
              "| preset | batch | flop_counter GFLOP/step | this formula | without attention | ratio (without "
              "attention / counter) | has convolutions |", "|---|---|---|---|---|---|---|"]
        for c in check:
            L.append(f"| {c['preset']} | {c['batch']} | {c['flop_counter_gflop']} | {c['analytic_gflop']} | "
                     f"{c['analytic_without_attention_gflop']} | {c['ratio_without_attention']} | "
                     f"{'yes' if c['has_conv'] else 'no'} |")
    L += ["", "## Memory per GPU (GiB)", "",
          "Per-GPU micro-batch and `train.update_freq` as in the next section (so activations are those of that "
          "micro-batch). DDP = `data2vec pretrain` with `train.parallel=ddp`, the default (fp32 weights, bf16 "
          "autocast). FSDP = `--set train.parallel=fsdp` (FSDP2 `fully_shard` per Transformer block for student "
          "and EMA teacher, `MixedPrecisionPolicy` with bf16 parameters/reductions over fp32 sharded master "
          "weights when `train.precision` gives bf16, DCP checkpoints; `data2vec.train.fsdp`, README \"Training on "
          "a cluster\"); its numbers here are modelled, not measured on GPUs. P = params, G = grads, O = AdamW moments, T = EMA teacher (fp32), X = other (DDP: "
          "gradient buckets + bf16 weight copies; FSDP: unsharded bf16 working copies of the root unit and one "
          "or two blocks), A = activations.", ""]
    L += ["| preset | GPUs | micro-batch | DDP P | G | O | T | X | A | **DDP total** | FSDP P | G | O | T | X | "
          "**FSDP total** |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for s in r["scaling"]:
            d, f = s["ddp"], s["fsdp"]
            L.append(f"| {r['preset']} | {s['gpus']} | {s['micro_batch_examples']:.4g} | {_g(d['params'])} | "
                     f"{_g(d['grads'])} | {_g(d['optimizer'])} | {_g(d['teacher'])} | {_g(d['other'])} | "
                     f"{_g(d['activations'])} | **{_g(d['total'])}** | {_g(f['params'])} | {_g(f['grads'])} | "
                     f"{_g(f['optimizer'])} | {_g(f['teacher'])} | {_g(f['other'])} | **{_g(f['total'])}** |")
    L += ["", "Activations by term at the paper's per-GPU batch (GiB):", "",
          "| preset | blocks | stem (CNN / pos-conv / embeddings) | v2 decoder | ALiBi bias | teacher targets | "
          "loss | total |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = next((x for x in r["scaling"] if x["gpus"] == r["paper"]["gpus"]), r["scaling"][0])
        a = s["activations"]
        L.append(f"| {r['preset']} ({s['gpus']} GPUs) | {_g(a['blocks'])} | {_g(a['stem'])} | "
                 f"{_g(a.get('decoder', 0))} | {_g(a.get('alibi_bias', 0))} | {_g(a['teacher_targets'])} | "
                 f"{_g(a['loss'])} | {_g(a['total'])} |")
    L += ["", "## Batch settings that reproduce the papers' effective batch", "",
          "The per-GPU micro-batch is kept at most the paper's (its memory was enough there); `update_freq` "
          "makes up the rest. Pass the `--set` flags to `data2vec pretrain`.", "",
          "| preset | paper | effective batch | GPUs | per-GPU micro-batch | update_freq | flags | exact? |",
          "|---|---|---|---|---|---|---|---|"]
    for r in results:
        p = r["paper"]
        for s in r["scaling"]:
            ok = "yes" if s["exact"] else f"no: {s['note']}"
            L.append(f"| {r['preset']} | {p['source']} | {s['paper_effective']:,.0f} {p['unit']} | {s['gpus']} | "
                     f"{s['per_gpu']:,} | {s['update_freq']} | `{s['set']}` | {ok} |")
    L += ["", "## Throughput (assumed unless marked measured)", "",
          "Per GPU: examples/s = sustained FLOP/s / FLOPs per example (at the paper's per-GPU micro-batch). "
          "N GPUs: N times that. Time per update = examples per GPU per update / per-GPU examples/s. Days = "
          "time for the preset's `train.max_update` updates. Communication per update and GPU is given for "
          "judging the linear-scaling assumption (DDP: one fp32 gradient all-reduce per update; FSDP: bf16 "
          "all-gathers of student (twice) and teacher and a bf16 reduce-scatter per micro-batch).", "",
          "| preset | source | examples/s/GPU | positions/s/GPU | GPUs | examples/s | positions/s | s/update | "
          "days for max_update | comm/update DDP GB | FSDP GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        src = "measured" if r["throughput_source"] == "measured" else "assumed"
        for s in r["scaling"]:
            L.append(f"| {r['preset']} | {src} | {_n(r['examples_per_s_per_gpu'])} | "
                     f"{_si(r['positions_per_s_per_gpu'])} | {s['gpus']} | {_n(s['examples_per_s'])} | "
                     f"{_si(s['positions_per_s'])} | {s['seconds_per_update']:.3g} | "
                     f"{s['days_for_max_update']:.3g} | {s['comm_bytes_per_update']['ddp'] / 1e9:.2f} | "
                     f"{s['comm_bytes_per_update']['fsdp'] / 1e9:.2f} |")
    L += ["", "Positions are frames (50 per audio second), tokens or patches. Audio seconds/s per GPU: " + ", ".join(
        f"{r['preset']} {_n(r['audio_s_per_s_per_gpu'])}" for r in results if "audio_s_per_s_per_gpu" in r) + ".",
          "", "## Assumptions and what is left out", "",
          "- FLOPs: matmuls and convolutions only (2 per multiply-add); attention 4 s^2 d per block and row "
          "forward; backward = 2 x forward; no activation recomputation; every layer runs (layerdrop 0.05 of the "
          "speech presets would save ~5% in expectation). v1 masked counts (head only) use 1 - (1 - p/l)^l of "
          "the positions for span masks and `num_mask_patches` for images; v2 kept counts are the masks' exact "
          "`int(T (1 - p))` (inverse/random) or `T - int(T p)`.",
          "- Memory: fp32 student weights, fp32 gradients, AdamW's two fp32 moments, fp32 EMA teacher "
          "(buffers included, negligible). bf16 autocast: matmul inputs saved in bf16, LayerNorm inputs in fp32. "
          "Activations per Transformer block 38 s b h bytes = Korthikanti et al. 2022's 34 s b h (16-bit, "
          "1-byte dropout masks) + 4 s b h for fp32 LayerNorm inputs, without their 5 a s^2 b attention-score "
          "term because `F.scaled_dot_product_attention`'s fused kernels keep no s x s matrices (an eager "
          "attention would add it). Stems: 8 (conv feature encoder) or 10 (positional conv, v2 decoder) bytes "
          "per output element. Teacher: its K target layers in bf16 + fp32 targets + one layer's working "
          "set, (2K + 16) s b h. Loss: 12 bytes per masked position and channel. Not counted: the CUDA context "
          "and allocator fragmentation (budget ~1-3 GiB and ~10-20%), NCCL buffers, the data loader.",
          "- FSDP: parameters, gradients, AdamW state and teacher divided by N; the per-GPU working set of "
          "unsharded bf16 parameters (root unit + 2 blocks) and gradients (root unit + 1 block) is not. Root = "
          "every parameter outside the Transformer blocks (CNN, embeddings, positional conv, head/decoder).",
          "- Batch: audio batches are capped by `max_tokens` samples per GPU; the effective batch is the cap x "
          "GPUs (the real batch of shorter crops is a little smaller, as in fairseq). The GPU counts are SPEC "
          "section A's; the per-GPU batches are the presets'.",
          "- Throughput: linear in N and independent of the per-GPU micro-batch size, which holds only while "
          "the micro-batch keeps the GPU busy (the 64-GPU rows with 1-4 examples per GPU are optimistic).",
          ""]
    return "\n".join(L)


def parse_measured(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items or []:
        name, _, val = it.partition("=")
        if not val or name not in PRESETS:
            raise SystemExit(f"--measured-samples-per-s expects PRESET=VALUE with PRESET one of {', '.join(PRESETS)}; "
                             f"got {it!r}")
        out[name] = float(val)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    ap.add_argument("--gpus", nargs="+", type=int, default=[8, 16, 64])
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="assumed dense bf16 peak of one GPU (H100 SXM)")
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation")
    ap.add_argument("--measured-samples-per-s", nargs="*", default=[], dest="measured", metavar="PRESET=VALUE",
                    help="measured examples/s of one GPU at the per-GPU micro-batch; replaces the assumption")
    ap.add_argument("--out", default=str(ROOT / "docs" / "scaling.md"))
    ap.add_argument("--no-doc", action="store_true", help="print the JSON only")
    args = ap.parse_args(argv)
    measured = parse_measured(args.measured)
    results = [analyse(p, tuple(args.gpus), args.peak_tflops, args.mfu, measured.get(p)) for p in args.presets]
    check = flop_counter_check()
    print(json.dumps({"assumptions": {"peak_tflops": args.peak_tflops, "mfu": args.mfu, "measured": measured},
                      "presets": results, "flop_counter_check": check}, indent=1, default=float))
    if not args.no_doc:
        command = "python " + " ".join(["benchmarks/scaling.py", *(argv if argv is not None else sys.argv[1:])])
        Path(args.out).write_text(markdown(results, args, command.strip(), check))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
